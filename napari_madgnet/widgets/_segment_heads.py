"""The Segment dock's controls for MADGNet's other heads: how objects are numbered, and uncertainty.

- "Objects by" (Clean-up): ``PostprocessConfig.instances`` = the model's default (True: the
  watershed on the distance head for models trained with it, connected components otherwise),
  "watershed" or "components" (docs/heads.md, part 1). Re-run instantly from the cached outputs.
- "uncertainty layer" (Advanced): ``InferenceConfig(uncertainty=True, tta=...)``; the result's
  ``uncertainty`` (the binary entropy of the probability, in [0, 1]; docs/heads.md, part 2) is
  shown as an Image layer "<image> uncertainty" on the image's grid. Flip passes cost one forward
  pass each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import QCheckBox, QComboBox

from napari_madgnet.widgets import _layers
from napari_madgnet.widgets._ui import Section

#: The "Objects by" choices: (text, ``PostprocessConfig.instances`` value).
INSTANCE_CHOICES: tuple[tuple[str, Any], ...] = (
    ("the model's default", True),
    ("watershed on the distance map", "watershed"),
    ("connected components", "components"),
)
#: Flip test-time augmentation: (text, forward passes).
TTA_CHOICES: tuple[tuple[str, int], ...] = (
    ("off (1 pass)", 1),
    ("2 flips (2 passes)", 2),
    ("4 flips (4 passes)", 4),
    ("8 flips (8 passes)", 8),
)
#: How the uncertainty layer looks: dark where the model is sure, bright where it hesitates.
UNCERTAINTY_LOOK = {
    "colormap": "inferno",
    "contrast_limits": (0.0, 1.0),
    "blending": "additive",
    "opacity": 0.7,
}


class HeadControls:
    """The controls, added as rows to the dock's Clean-up and Advanced sections."""

    def __init__(self, clean_up: Section, advanced: Section) -> None:
        self.instance_method = QComboBox()
        for text, value in INSTANCE_CHOICES:
            self.instance_method.addItem(text, value)
        clean_up.add_row(
            "Objects by",
            self.instance_method,
            "How touching objects are told apart when each gets its own number: a watershed on the "
            "model's distance map splits them; connected components keep touching ones together. "
            "The default is the watershed for models trained with the distance head.",
        )
        self.uncertainty = QCheckBox("uncertainty layer")
        self.tta = QComboBox()
        for text, value in TTA_CHOICES:
            self.tta.addItem(text, value)
        advanced.add_row(
            None,
            self.uncertainty,
            "Also add '<image> uncertainty': 0 where the model is sure, 1 where it is undecided. It marks "
            "where the mask is most likely wrong (the Fine-tune dock's 'Annotate next' ranks regions by it).",
        )
        advanced.add_row(
            "Flip passes",
            self.tta,
            "Test-time augmentation: average the model over flipped copies. Slightly better masks and "
            "uncertainty; each pass costs one more run of the network.",
        )

    def instances(self, numbered: bool) -> bool | str:
        """``PostprocessConfig.instances`` for the "number each object" box."""
        return self.instance_method.currentData() if numbered else False

    def inference_settings(self) -> dict[str, Any]:
        """``InferenceConfig`` fields: ``uncertainty`` and ``tta``."""
        return {"uncertainty": self.uncertainty.isChecked(), "tta": int(self.tta.currentData())}


def write_uncertainty(widget: Any, uncertainty: np.ndarray) -> Any:
    """Write a result's (K, ...) uncertainty as the Image layer "<image> uncertainty" of the
    Segment dock's last run (same scale, translate and affine as the image; updated in place on
    a re-run of the same size unless "new layer" is ticked). Returns the layer."""
    last = widget.last
    k = uncertainty.shape[0]
    place = dict(last.place)
    if k == 1:
        values, full, region = uncertainty[0], last.region.out_shape, last.region.out_key
    else:  # one plane per class, in front
        values, full = uncertainty, (k, *last.region.out_shape)
        region = (slice(None), *last.region.out_key)
        place = {"scale": [1.0, *place["scale"]], "translate": [0.0, *place["translate"]]}
    name = _layers.output_name(last.image_name, "uncertainty")
    layer = None if widget.new_layer.isChecked() else _layers.find_layer(widget.viewer, name, Image)
    if layer is not None and tuple(layer.data.shape) != full:
        layer = None
    layer = _layers.write_region(
        widget.viewer,
        layer=layer,
        name=name,
        full_shape=full,
        region=region,
        values=np.clip(values, 0.0, 1.0).astype(np.float32, copy=False),
        kind="image",
        place=place,
        metadata=last.metadata,
    )
    for key, value in UNCERTAINTY_LOOK.items():
        setattr(layer, key, value)
    _layers.mark(layer, role="uncertainty", image=last.image_name, classes=k > 1)
    return layer
