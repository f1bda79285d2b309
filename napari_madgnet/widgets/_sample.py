"""The nuclei sample as napari opens it: its image and annotation, and a first model to train.

``File > Open Sample > MADGNet > Nuclei (DSB2018)`` calls ``nuclei_sample``: the layers come from
the Qt-free ``sample_data.nuclei_sample``; when no model is registered yet, the Fine-tune dock
opens beside them with the first-model suggestion on this image and its labels, so the sample
leads to a first segmentation without a download.
"""

from __future__ import annotations

from typing import Any


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample data: the image and its labels; the Fine-tune dock follows when no model exists."""
    from napari_madgnet.sample_data import nuclei_sample as layers

    data = layers()
    _suggest_first_model()
    return data


def _suggest_first_model() -> None:
    """Open the Fine-tune dock once the sample's layers are in (the next event-loop turn)."""
    import napari
    from qtpy.QtCore import QTimer

    from napari_madgnet.registry import list_models

    viewer = napari.current_viewer()
    if viewer is None or list_models(read=False):
        return

    def open_dock() -> None:
        window = getattr(viewer, "window", None)
        if window is None or getattr(window, "_qt_window", None) is None:
            return  # the window closed meanwhile
        _, finetune = window.add_plugin_dock_widget("napari-madgnet", "Fine-tune")
        finetune.use_first_model()

    QTimer.singleShot(0, open_dock)
