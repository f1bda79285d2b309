"""napari dock widgets: Segment, Fine-tune, Quality check, Measure (the only part that imports Qt).

Declared in ``napari.yaml``; napari constructs each with the viewer. The classes are imported on
first access, so importing this package (as tools that walk the package tree do) loads no Qt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneWidget", "MeasureWidget", "QualityWidget", "SegmentWidget"]


def __getattr__(name: str) -> Any:
    if name == "SegmentWidget":
        from napari_madgnet.widgets._segment import SegmentWidget

        return SegmentWidget
    if name == "FinetuneWidget":
        from napari_madgnet.widgets._finetune import FinetuneWidget

        return FinetuneWidget
    if name == "QualityWidget":
        from napari_madgnet.widgets._qc import QualityWidget

        return QualityWidget
    if name == "MeasureWidget":
        from napari_madgnet.widgets._measure import MeasureWidget

        return MeasureWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
