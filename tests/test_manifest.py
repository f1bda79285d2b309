"""The napari manifest is valid, found through the entry point, and every python_name imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_distribution("napari-madgnet")


def test_manifest_found_through_entry_point_and_valid() -> None:
    manifest = _manifest()
    assert manifest.name == "napari-madgnet"
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-madgnet"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_python_name_imports() -> None:
    manifest = _manifest()
    assert manifest.contributions.commands, "the manifest declares no commands"
    for command in manifest.contributions.commands:
        module_name, _, attr = command.python_name.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attr)), command.python_name


def test_root_manifest_and_package_manifest_are_one_file() -> None:
    packaged = ROOT / "napari_madgnet" / "napari.yaml"
    assert (ROOT / "napari.yaml").is_file()
    assert packaged.resolve() == (ROOT / "napari.yaml").resolve()


@pytest.mark.slow
def test_wheel_carries_manifest_and_entry_point(tmp_path: Path) -> None:
    """A regular install gets the manifest as a real file, not a dangling link."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("napari_madgnet-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("napari_madgnet/napari.yaml").decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari_madgnet:napari.yaml" in entry_points
    assert "madgnet = napari_madgnet.cli:main" in entry_points
    assert "napari_madgnet/data/nuclei_dsb2018_image.tif" in names
