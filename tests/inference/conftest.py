"""Shared fixtures: one real MADGNet per session, saved once as a small-input checkpoint.

The checkpoint's preprocessing says input_size 32 (the smallest), so the resize protocol runs at
32 x 32 and the whole suite stays within a few minutes on two busy CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

INPUT_SIZE = 32


@pytest.fixture(scope="session")
def madgnet():
    from napari_madgnet.model import MADGNet

    torch.manual_seed(0)
    model = MADGNet(backbone="resnest50", num_classes=1).eval()
    model.checkpoint_info = {
        "preprocessing": {"normalization": "scale255", "input_size": INPUT_SIZE, "channels": 3}
    }
    return model


@pytest.fixture(scope="session")
def checkpoint(madgnet, tmp_path_factory) -> Path:
    """A project-format checkpoint of the session's MADGNet (input size 32)."""
    from napari_madgnet.model import save_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny-madgnet.pth"
    save_model(
        madgnet,
        path,
        {
            "preprocessing": {"normalization": "scale255", "input_size": INPUT_SIZE, "channels": 3},
            "provenance": {"trained_on": "nothing (random weights, tests)", "modality": "test"},
        },
    )
    return path


@pytest.fixture(scope="session")
def released_checkpoint(madgnet, tmp_path_factory) -> Path:
    """The session's MADGNet in the authors' release layout {"model_state_dict", "current_epoch"}."""
    path = tmp_path_factory.mktemp("release") / "model_weight(EPOCH 200).pth.tar"
    torch.save({"model_state_dict": madgnet.state_dict(), "current_epoch": 200}, path)
    return path
