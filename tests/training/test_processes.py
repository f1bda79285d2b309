"""Process-level faults and DDP: kill -9 mid-run then resume; two gloo ranks stay in agreement."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
KILL_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from tests.training.conftest import blobs
from napari_madgnet.training import TrainConfig, data_from_arrays, train
cfg = TrainConfig.finetune(init="scratch", backbone="resnet50", patch_size=64, batch_size=2, max_steps=3,
                           steps_per_epoch=3, checkpoint_every=1, device="cpu")
image, labels = blobs()
train(cfg, data_from_arrays(image, labels, cfg), out_dir=sys.argv[1])
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _state_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except Exception:
        return 0


def test_kill_9_mid_run_then_resume(tmp_path) -> None:
    from napari_madgnet.training import TrainConfig, data_from_arrays, train

    from .conftest import blobs

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT)), str(run)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 400
    while _state_step(run / "last_state.pt") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _state_step(run / "last_state.pt")
    assert 1 <= done < 3
    cfg = TrainConfig.finetune(
        init="scratch",
        backbone="resnet50",
        patch_size=64,
        batch_size=2,
        max_steps=3,
        steps_per_epoch=3,
        checkpoint_every=1,
        device="cpu",
    )
    image, labels = blobs()
    result = train(cfg, data_from_arrays(image, labels, cfg), out_dir=run, resume=True)
    assert [r["step"] for r in result.history] == [1, 2, 3]


@pytest.mark.slow
def test_kill_9_finetune_then_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    """``madgnet finetune`` killed with SIGKILL mid-run, then ``--resume RUN_DIR``: the same model
    as a run that was never interrupted, and one log of steps 1..N (issue 16, item 2)."""
    import tifffile

    from napari_madgnet.model import load_model
    from napari_madgnet.training import TrainConfig

    from .conftest import blobs

    image, labels = blobs()
    tifffile.imwrite(tmp_path / "image.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    cfg = TrainConfig.finetune(
        init="scratch",
        backbone="resnet50",
        patch_size=64,
        batch_size=2,
        checkpoint_every=1,
        warmup_steps=0,
        early_stopping=None,
        device="cpu",
    ).with_length(steps=4, validate_every=2)
    cfg.to_yaml(tmp_path / "recipe.yaml")
    env = _env()
    env["MADGNET_MODELS_DIR"] = str(tmp_path / "models")
    env["MADGNET_CACHE_DIR"] = str(tmp_path / "cache")
    cli = [sys.executable, "-m", "napari_madgnet", "finetune"]
    data = ["--image", str(tmp_path / "image.tif"), "--labels", str(tmp_path / "labels.tif")]
    data += ["--config", str(tmp_path / "recipe.yaml"), "--no-register"]

    straight = subprocess.run(
        [*cli, *data, "--out", str(tmp_path / "straight.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    run = tmp_path / "killed_run"
    proc = subprocess.Popen(
        [*cli, *data, "--out", str(tmp_path / "killed.pt")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    while _state_step(run / "last_state.pt") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _state_step(run / "last_state.pt")
    assert 2 <= done < 4 and not (tmp_path / "killed.pt").exists()  # killed after a validation
    assert (run / ".madgnet-run.lock").exists()  # left behind by the killed process

    resumed = subprocess.run(
        [*cli, "--resume", str(run)], env=env, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Took over the lock" in resumed.stderr  # the dead run's locks, with a note
    assert not (run / ".madgnet-run.lock").exists()

    a, b = load_model(tmp_path / "straight.pt").state_dict(), load_model(tmp_path / "killed.pt").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    logs = {}
    for name in ("straight_run", "killed_run"):
        lines = (tmp_path / name / "train_log.jsonl").read_text().splitlines()
        logs[name] = [json.loads(line) for line in lines]
    assert [r["step"] for r in logs["killed_run"]] == [1, 2, 3, 4]
    for x, y in zip(logs["killed_run"], logs["straight_run"], strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert ("val" in x) == ("val" in y)
        if "val" in y:
            assert x["val"]["dice"] == pytest.approx(y["val"]["dice"], rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_agree(tmp_path) -> None:
    env = _env()
    env["MASTER_ADDR"] = "127.0.0.1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(ROOT / "tests" / "training" / "scripts" / "ddp_run.py"),
        str(tmp_path),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["first"] == r1["first"] and r0["sum"] == pytest.approx(r1["sum"], rel=1e-12)
    assert (tmp_path / "run" / "last_state.pt").is_file()  # written by rank 0 only
