"""The bundled real sample is intact and served to napari as two layers."""

from __future__ import annotations

import hashlib

import numpy as np

from napari_madgnet.sample_data import CITATION, load_nuclei, nuclei_sample, sample_paths

SHA256 = {
    "nuclei_dsb2018_image.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "nuclei_dsb2018_labels.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}


def test_files_match_their_published_hashes() -> None:
    for path in sample_paths():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path.name]


def test_image_and_labels() -> None:
    image, labels = load_nuclei()
    assert image.shape == labels.shape == (512, 512)
    assert image.dtype == np.uint16
    assert len(np.unique(labels)) - 1 == 125


def test_layer_data_for_napari() -> None:
    (image, image_meta, image_kind), (labels, _, labels_kind) = nuclei_sample()
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image_meta["name"] == "nuclei"
    assert "Caicedo" in CITATION and image_meta["metadata"]["citation"] == CITATION
    assert labels.shape == image.shape
