"""Shared test set-up: markers, determinism, and a small thread count for 2-core machines."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _isolated_user_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's real model registry and download cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("MADGNET_MODELS_DIR", str(root / "user-models"))
    monkeypatch.setenv("MADGNET_CACHE_DIR", str(root / "user-cache"))
    # Numbers that do not depend on the CPU CI draws: "auto" runs fp32 in the tests (bf16 on CPUs
    # with native bf16 otherwise). tests/inference/test_precision.py tests "auto" itself and bf16.
    monkeypatch.setenv("MADGNET_PRECISION", "fp32")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder; yields (base URL, folder).

    Plain HTTP, so downloads from it need the explicit insecure-mirror opt-in users would give.
    """
    monkeypatch.setenv("MADGNET_ALLOW_INSECURE_MIRROR", "1")
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def publish() -> Callable[..., str]:
    """Write a weight file named like the releases (stem-<sha256 prefix>.pth) into a folder."""
    return _publish


def _publish(root: Path, stem: str, payload: bytes, good: bool = True) -> str:
    prefix = hashlib.sha256(payload).hexdigest()[:8] if good else "deadbeef"
    name = f"{stem}-{prefix}.pth"
    (root / name).write_bytes(payload)
    return name


@pytest.fixture()
def models_home(tmp_path, monkeypatch) -> Path:
    """An empty registry folder (MADGNET_MODELS_DIR) and cache folder for one test."""
    home = tmp_path / "models"
    monkeypatch.setenv("MADGNET_MODELS_DIR", str(home))
    monkeypatch.setenv("MADGNET_CACHE_DIR", str(tmp_path / "cache"))
    return home


#: Steps of the session's nuclei model: the demo's first-model preset, shortened so that it
#: trains in about a minute or two on 2 cores (the demo's 400 steps take several minutes).
TRAINED_NUCLEI_STEPS = 80


@pytest.fixture(scope="session")
def trained_nuclei_model(tmp_path_factory: pytest.TempPathFactory):
    """A MADGNet fine-tuned on the top half of the bundled nuclei sample, as ``napari_madgnet.demo``
    trains it (first-model preset: scratch, 64 px patches, batch 4) but for
    ``TRAINED_NUCLEI_STEPS`` steps; returns ``(model, image, labels)`` with the held-out bottom
    half being ``image[256:]``. Slow (a minute or two): only ``slow`` tests should use it."""
    import torch

    from napari_madgnet.demo import demo_config
    from napari_madgnet.sample_data import load_nuclei
    from napari_madgnet.training import finetune

    image, labels = load_nuclei()
    half = image.shape[0] // 2
    root = tmp_path_factory.mktemp("trained-nuclei")
    config = demo_config(max_steps=TRAINED_NUCLEI_STEPS, steps_per_epoch=TRAINED_NUCLEI_STEPS // 2)
    with torch.inference_mode(False):
        result = finetune(
            image[:half],
            labels[:half],
            config=config,
            out=root / "nuclei.pt",
            work_dir=root / "run",
            register=False,
        )
    return result.model, image, labels
