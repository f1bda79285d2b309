"""Fixtures for the dock-widget tests: a small saved model in the registry, notices, waiting."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TIMEOUT_MS = 90_000


@pytest.fixture(scope="session")
def _tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random MADGNet (ResNet-50 encoder, 64 px input) saved once per session."""
    import torch

    from napari_madgnet.model import MADGNet, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_model(
        MADGNet("resnet50").eval(),
        path,
        {"preprocessing": {"input_size": 64}, "provenance": {"description": "random test model"}},
    )
    return path


@pytest.fixture(autouse=True)
def _own_models_folder(_isolated_user_folders: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each widget test starts with an empty registry (models saved by other tests stay there)."""
    folder = tmp_path / "models"
    monkeypatch.setenv("MADGNET_MODELS_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _no_network_and_no_background_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic docks: the ImageNet weights are not downloadable (a closed local port, as
    offline), and the Fine-tune dock measures the time only once training runs, unless a test asks
    for the calibration before Start (``auto_estimate``)."""
    monkeypatch.setenv("MADGNET_ALLOW_INSECURE_MIRROR", "1")
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", "http://127.0.0.1:9/")
    from napari_madgnet.widgets._finetune import FinetuneWidget

    monkeypatch.setattr(FinetuneWidget, "estimate_delay_ms", None)


@pytest.fixture
def auto_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Fine-tune dock calibrates its time estimate shortly after the settings settle."""
    from napari_madgnet.widgets._finetune import FinetuneWidget

    monkeypatch.setattr(FinetuneWidget, "estimate_delay_ms", 100)


@pytest.fixture
def tiny_model(_own_models_folder: Path, _tiny_checkpoint: Path) -> str:
    """The registry name of the small model, copied into the test's models folder."""
    from napari_madgnet.paths import models_dir

    target = models_dir() / "tiny.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(_tiny_checkpoint, target)
    return "tiny"


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Error notifications the widgets showed (napari's show_error, captured)."""
    shown: list[str] = []
    monkeypatch.setattr("napari_madgnet.widgets._common.show_error", shown.append)
    return shown


@pytest.fixture
def wait_job(qtbot) -> Callable[[object], None]:
    """Wait until a widget's job (and its final callbacks) are done."""

    def wait(widget: object, timeout: int = TIMEOUT_MS) -> None:
        qtbot.waitUntil(lambda: widget.job is None or not widget.job.running, timeout=timeout)
        qtbot.wait(20)

    return wait
