"""TorchScript export: the traced plain model equals PyTorch within 1e-5 and loads without
napari-madgnet."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_madgnet.export import ExportError, export_torchscript, read_torchscript_metadata
from napari_madgnet.export.common import verification_input
from napari_madgnet.export.torchscript import TORCHSCRIPT_TOLERANCE, trace
from napari_madgnet.model import fold_batchnorm, inference_copy, load_model

from .conftest import PREPROCESSING, reference_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("ts") / "model.pt"
    result = export_torchscript(checkpoint, out)
    assert result.checks and all(v <= TORCHSCRIPT_TOLERANCE for v in result.checks.values())
    return out


@pytest.fixture(scope="module")
def loaded(checkpoint: Path):
    return load_model(checkpoint)


SIZES = [
    pytest.param((1, 300, 301), id="300x301"),
    pytest.param((1, 544, 544), id="544x544", marks=pytest.mark.slow),
    pytest.param((1, 352, 352), id="352x352"),
    pytest.param((3, 70, 101), id="batch3-70x101"),
]


@pytest.mark.parametrize("shape", SIZES)
def test_torchscript_equals_torch(exported: Path, loaded, shape) -> None:
    batch, height, width = shape
    x = verification_input(1, height, width, batch, seed=5)
    scripted = torch.jit.load(str(exported))
    with torch.no_grad():
        got, expected = scripted(x), loaded(x)
    assert got.shape == (batch, 1, height, width) and expected.std() > 0.05
    assert (got - expected).abs().max() <= TORCHSCRIPT_TOLERANCE


def test_metadata_travels_in_the_archive(exported: Path) -> None:
    meta = read_torchscript_metadata(exported)
    assert meta["format"] == "torchscript" and meta["preprocessing"] == PREPROCESSING
    assert meta["output"]["activation"] == "sigmoid"


HIDDEN = """
import importlib.abc, json, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "napari_madgnet" or name.startswith("napari_madgnet."):
            raise ImportError(f"{name} is hidden in this test")
        return None

sys.meta_path.insert(0, Hide())
try:
    import napari_madgnet  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the package is still importable")

import numpy as np, torch
torch.set_num_threads(1)
model = torch.jit.load(sys.argv[1], map_location="cpu")
x = torch.from_numpy(np.load(sys.argv[2]))
with torch.no_grad():
    np.save(sys.argv[3], model(x).numpy())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("napari"))))
"""


def test_loads_and_runs_without_napari_madgnet(tmp_path: Path, exported: Path, loaded) -> None:
    x = verification_input(1, 96, 75, 2, seed=7)
    np.save(tmp_path / "x.npy", x.numpy())
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(HIDDEN))
    # -I: no PYTHONPATH, no user site, no current folder; the blocker hides an installed copy.
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(exported), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # nothing napari* was imported
    with torch.no_grad():
        expected = loaded(x).numpy()
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() <= TORCHSCRIPT_TOLERANCE


@pytest.mark.parametrize("backbone", ["resnet50", "res2net50_v1b_26w_4s"])
def test_other_encoders_trace_for_every_size(backbone: str) -> None:
    model = reference_model(backbone)
    traced = trace(model)
    for shape in [(2, 3, 64, 64), (1, 1, 100, 45)]:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert (traced(x) - model(x)).abs().max() <= TORCHSCRIPT_TOLERANCE


@pytest.mark.parametrize("copy", [fold_batchnorm, inference_copy], ids=["folded", "packed"])
def test_inference_copies_are_refused(tmp_path: Path, copy) -> None:
    with pytest.raises(ExportError, match="inference copy"):
        export_torchscript(copy(reference_model("resnet50")), tmp_path / "m.pt")
    assert not any(tmp_path.iterdir())
