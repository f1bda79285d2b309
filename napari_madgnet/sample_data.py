"""The bundled real sample: a nuclei image and its annotation (DSB2018 / BBBC038, CC0).

Qt-free so that the demo, tests and scripts can use it; napari's sample-data menu calls
``nuclei_sample`` through the manifest.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

CITATION = (
    "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl. "
    "Nature Methods 16, 1247-1253 (2019). Image BBBC038 (CC0), as shipped with stardist (BSD-3)."
)


def sample_paths() -> tuple[Path, Path]:
    """Paths of the bundled image and labels files."""
    root = files("napari_madgnet") / "data"
    return Path(str(root / "nuclei_dsb2018_image.tif")), Path(str(root / "nuclei_dsb2018_labels.tif"))


def load_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The 512 x 512 uint16 nuclei image and its uint16 instance labels (125 nuclei)."""
    import tifffile

    image_path, labels_path = sample_paths()
    return tifffile.imread(image_path), tifffile.imread(labels_path)


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample data: the image and its labels as two layers."""
    image, labels = load_nuclei()
    meta = {"citation": CITATION}
    return [
        (image, {"name": "nuclei", "metadata": meta}, "image"),
        (labels, {"name": "nuclei annotation", "metadata": meta}, "labels"),
    ]
