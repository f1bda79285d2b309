"""napari dock widgets: Segment and Fine-tune (the only part of napari-madgnet that imports Qt).

Declared in ``napari.yaml``; napari constructs each with the viewer. See ``docs/design.md``.
"""

from napari_madgnet.widgets._finetune import FinetuneWidget
from napari_madgnet.widgets._segment import SegmentWidget

__all__ = ["FinetuneWidget", "SegmentWidget"]
