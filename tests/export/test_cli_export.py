"""``madgnet export``: writes, refuses to overwrite, explains user errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_madgnet.cli import main
from napari_madgnet.export import read_torchscript_metadata
from napari_madgnet.model import load_model


def test_export_torchscript_from_a_checkpoint_path(tmp_path: Path, checkpoint: Path, capsys) -> None:
    out = tmp_path / "exports" / "nuclei.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(out)]) == 0
    assert "torchscript 2x1x70x101" in capsys.readouterr().out
    assert read_torchscript_metadata(out)["preprocessing"]["tile_size"] == 64
    x = torch.rand(1, 1, 64, 80)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(out))(x), load_model(checkpoint)(x), atol=1e-5)

    before = out.stat().st_mtime_ns
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert main(["export", str(checkpoint), "-f", "torchscript", "-o", str(out), "--overwrite"]) == 0
    assert out.stat().st_mtime_ns != before


def test_export_a_registered_model_by_name(tmp_path: Path, checkpoint: Path, capsys) -> None:
    assert main(["models", "add", str(checkpoint), "--name", "nuclei-test"]) == 0
    out = tmp_path / "by-name.pt"
    assert main(["export", "NUCLEI-test", "-f", "torchscript", "-o", str(out)]) == 0
    assert read_torchscript_metadata(out)["model_name"] == "nuclei-test"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-model", "-f", "onnx"], "Unknown model 'no-such-model'"),
        (["CKPT", "-f", "onnx", "--opset", "11"], "opset 11 is too old"),
        (["CKPT", "-f", "torchscript", "--author", "me"], "bioimageio only"),
        (["CKPT", "-f", "bioimageio", "--data-url", "https://example.org"], "need --data-citation"),
        (["CKPT", "-f", "bioimageio", "--data-citation", "my data"], "needs --data-doi"),
        (
            [
                "CKPT",
                "-f",
                "bioimageio",
                "--test-size",
                "100",
                "--data-citation",
                "x",
                "--data-url",
                "https://e.org",
            ],
            "multiple of 32",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, checkpoint: Path, capsys, args, message) -> None:
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    assert main(["export", *args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
