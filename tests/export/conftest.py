"""Models for the export tests: the default build with the deterministic reference weights
(tests/fixtures/official/weights_rule.py), whose outputs vary enough that a wrong graph shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from napari_madgnet.model import MADGNet, save_model

RULE = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "weights_rule.py"
PREPROCESSING = {"normalization": "percentile", "tile_size": 64, "input_size": None, "channels": 1}
PROVENANCE = {"trained_on": "nuclei_dsb2018_image: 1 annotated plane(s), binary labels"}


def reference_model(backbone: str = "resnest50", **kwargs) -> MADGNet:
    spec = importlib.util.spec_from_file_location("weights_rule", RULE)
    rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rule)
    model = MADGNet(backbone, **kwargs)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(rule.fill_state_dict(shapes))
    return model.eval()


@pytest.fixture(scope="session")
def models() -> dict[str, MADGNet]:
    """Reference-weight models built once per backbone on demand."""
    return {}


@pytest.fixture
def model(models) -> MADGNet:
    if "resnest50" not in models:
        models["resnest50"] = reference_model("resnest50")
    return models["resnest50"].eval()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project checkpoint of a grey-input (1-channel) model with preprocessing and provenance."""
    path = tmp_path_factory.mktemp("ckpt") / "nuclei_model.pt"
    save_model(reference_model("resnest50"), path, {"preprocessing": PREPROCESSING, "provenance": PROVENANCE})
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # As in tests/model: on a shared 2-core machine two OpenMP threads per process get
    # descheduled at barriers and run many times slower than one.
    import torch

    torch.set_num_threads(1)
