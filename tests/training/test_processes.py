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
