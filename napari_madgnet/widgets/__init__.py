"""napari dock widgets: Segment and Fine-tune (the only part of napari-madgnet that imports Qt).

Declared in ``napari.yaml``; napari constructs each with the viewer. The classes are imported on
first access, so importing this package (as tools that walk the package tree do) loads no Qt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneWidget", "SegmentWidget"]


def __getattr__(name: str) -> Any:
    if name == "SegmentWidget":
        from napari_madgnet.widgets._segment import SegmentWidget

        return SegmentWidget
    if name == "FinetuneWidget":
        from napari_madgnet.widgets._finetune import FinetuneWidget

        return FinetuneWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
