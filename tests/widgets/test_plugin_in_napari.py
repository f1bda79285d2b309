"""napari itself finds the plugin and shows its contributions (real napari under Xvfb)."""

from __future__ import annotations

import numpy as np


def _menu_command_ids(menu_id: str) -> set[str]:
    from napari._app_model import get_app_model

    menus = dict(get_app_model().menus)
    return {item.command.id for item in menus.get(menu_id, []) if hasattr(item, "command")}


def test_napari_lists_the_plugin_contributions(make_napari_viewer) -> None:
    make_napari_viewer()
    assert "napari-madgnet.nuclei_dsb2018" in _menu_command_ids("napari/file/samples")


def test_sample_data_opens_as_image_and_labels(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-madgnet", "nuclei_dsb2018")
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei annotation"]
    labels = viewer.layers["nuclei annotation"]
    assert labels.data.shape == (512, 512)
    assert np.issubdtype(labels.data.dtype, np.integer)
    assert "Caicedo" in labels.metadata["citation"]
