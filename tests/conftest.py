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
