"""``madgnet predict`` runs as users have them: interrupted and continued, output folders that
cannot be written, inputs that hold the outputs, linked folders, the run log (issue 16, items 5,
6, 7, 18; issue 12's per-file log)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from inference_helpers import rng_image

from napari_madgnet.cli import main

REPO = Path(__file__).resolve().parents[2]


def _images(folder: Path, n: int, shape=(40, 48), prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i}.tif"
        tifffile.imwrite(p, rng_image(shape, np.uint8, seed=i))
        paths.append(p)
    return paths


def _log(out: Path) -> dict:
    (path,) = sorted(out.glob("madgnet-predict-*.json"), key=lambda p: p.stat().st_mtime_ns)[-1:]
    return json.loads(path.read_text())


def _predict(*args: str) -> int:
    return main(["predict", *args, "-q"])


def test_skip_existing_continues_a_run_and_completes_half_sets(tmp_path, checkpoint, capsys) -> None:
    inputs = tmp_path / "in"
    files = _images(inputs, 3)
    out = tmp_path / "out"
    assert _predict(str(files[0]), "-m", str(checkpoint), "-o", str(out)) == 0  # masks only
    capsys.readouterr()
    # a rerun over the folder without a choice is refused up front, naming both ways on
    assert _predict(str(inputs), "-m", str(checkpoint), "-o", str(out), "--save-probabilities") == 2
    err = capsys.readouterr().err
    assert "img0_mask.tif" in err and "--skip-existing" in err and "--overwrite" in err
    stamp = (out / "img0_mask.tif").stat().st_mtime_ns
    args = [str(inputs), "-m", str(checkpoint), "-o", str(out), "--save-probabilities", "--skip-existing"]
    assert _predict(*args) == 0
    # img0 had its mask but not its probabilities (a set left incomplete): redone whole
    assert (out / "img0_probabilities.tif").is_file() and (out / "img0_mask.tif").stat().st_mtime_ns != stamp
    assert "3/3 image(s) segmented, 0 failed" in capsys.readouterr().out
    assert _predict(*args) == 0  # everything there now: all skipped, none failed
    assert "0/3 image(s) segmented, 3 skipped (outputs exist), 0 failed" in capsys.readouterr().out
    statuses = [f["status"] for f in _log(out)["files"]]
    assert statuses == ["skipped"] * 3


def test_the_log_lists_what_each_file_was_segmented_with(tmp_path, checkpoint) -> None:
    (src,) = _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert _predict(str(src), "-m", str(checkpoint), "-o", str(out), "--device", "cpu") == 0
    log = _log(out)
    assert log["status"] == "finished" and log["summary"]["segmented"] == 1
    (record,) = log["files"]
    assert record["axes"] == "YX" and record["shape"] == [40, 48] and record["dtype"] == "uint8"
    norm = record["normalization"]
    assert norm["method"] == "scale255" and len(norm["range"]) == 2 and norm["range"][1] > norm["range"][0]
    assert record["geometry"] == "resize" and record["input_size"] == 32 and record["device"] == "cpu"
    assert record["provenance"]["resolved"]["device"] == "cpu"  # the full record is kept as well


@pytest.mark.parametrize("quiet", [True, False])
def test_warnings_name_their_file_and_quiet_only_hides_the_bar(tmp_path, checkpoint, capsys, quiet) -> None:
    folder = tmp_path / "in"
    _images(folder, 1)
    tifffile.imwrite(folder / "blank.tif", np.full((40, 48), 7.0, np.float32))
    args = ["predict", str(folder), "-m", str(checkpoint), "-o", str(tmp_path / "out"), "--device", "cpu"]
    assert main(args + (["-q"] if quiet else [])) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: blank.tif: ") and "constant" in warnings[0]


@pytest.mark.parametrize("case", ["a_file", "under_a_file", "not_writable"])
def test_an_unusable_output_folder_is_refused_before_the_model_loads(
    tmp_path, checkpoint, capsys, monkeypatch, case
) -> None:
    (src,) = _images(tmp_path / "in", 1)
    if case == "a_file":
        out = tmp_path / "out.tif"
        out.write_bytes(b"x")
        words = "is a file, not a folder"
    elif case == "under_a_file":
        (tmp_path / "blocker").write_bytes(b"x")
        out = tmp_path / "blocker" / "masks"
        words = "is a file"
    else:
        if os.geteuid() == 0:  # root writes into read-only modes: use a folder the kernel refuses
            out = Path("/sys/madgnet-test-out")
            if not Path("/sys").is_dir():
                pytest.skip("no /sys to refuse a root write")
        else:
            locked = tmp_path / "locked"
            locked.mkdir()
            locked.chmod(0o555)
            out = locked / "masks"
        words = "Cannot write into the output folder"

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr("napari_madgnet.registry.load_registered_model", no_model)
    assert _predict(str(src), "-m", str(checkpoint), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert words in err and str(out) in err


def test_output_folder_inside_the_input_folder_is_left_out_on_a_rerun(tmp_path, checkpoint, capsys) -> None:
    data = tmp_path / "data"
    _images(data, 2)
    _images(data / "sub", 1, prefix="deep")
    out = data / "masks"
    args = [str(data), "-m", str(checkpoint), "-o", str(out), "--recursive"]
    assert _predict(*args) == 0
    first = capsys.readouterr()
    assert "3/3 image(s) segmented" in first.out
    assert _predict(*args, "--skip-existing") == 0
    again = capsys.readouterr()
    assert "0/3 image(s) segmented, 3 skipped" in again.out  # no img0_mask_mask.tif
    assert f"left out {out}: the output folder (-o)" in again.err
    assert not list(out.glob("*_mask_mask*"))
    # the output folder the same as the input folder: the earlier outputs are not inputs
    flat = tmp_path / "flat"
    _images(flat, 1)
    assert _predict(str(flat), "-m", str(checkpoint), "-o", str(flat)) == 0
    capsys.readouterr()
    assert _predict(str(flat), "-m", str(checkpoint), "-o", str(flat), "--skip-existing") == 0
    out_text = capsys.readouterr()
    assert "0/1 image(s) segmented, 1 skipped" in out_text.out
    assert "img0_mask.tif: an output of an earlier madgnet predict run" in out_text.err
    # a user's own file named like an output is still protected
    (tmp_path / "mine").mkdir()
    tifffile.imwrite(tmp_path / "mine" / "a_mask.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "mine" / "a.tif", rng_image((40, 40), np.uint8))
    assert _predict(str(tmp_path / "mine"), "-m", str(checkpoint), "-o", str(tmp_path / "mine")) == 2
    assert "would overwrite an input" in capsys.readouterr().err


def test_recursive_follows_linked_sub_folders_and_reports_loops(tmp_path, checkpoint, capsys) -> None:
    data = tmp_path / "data"
    _images(data, 1)
    elsewhere = tmp_path / "scans"
    _images(elsewhere, 2)
    (data / "linked").symlink_to(elsewhere, target_is_directory=True)
    (data / "loop").symlink_to(data, target_is_directory=True)
    out = tmp_path / "out"
    assert _predict(str(data), "-m", str(checkpoint), "-o", str(out), "--recursive") == 2  # name clash
    assert "would both write" in capsys.readouterr().err
    for p in elsewhere.iterdir():
        p.rename(p.with_name("scan_" + p.name))
    assert _predict(str(data), "-m", str(checkpoint), "-o", str(out), "--recursive") == 0
    captured = capsys.readouterr()
    assert "3/3 image(s) segmented" in captured.out
    assert "loop: the folder" in captured.err and "searched once" in captured.err
    names = sorted(p.name for p in out.glob("*_mask.tif"))
    assert names == ["img0_mask.tif", "scan_img0_mask.tif", "scan_img1_mask.tif"]
    assert "searched once" in _log(out)["left_out"][0]["reason"]


def test_predict_leaves_the_models_folder_as_it_was(tmp_path, checkpoint, models_home) -> None:
    release = tmp_path / "release"
    release.mkdir()
    model = release / "model.pth"
    model.write_bytes(checkpoint.read_bytes())
    (src,) = _images(tmp_path / "in", 1)
    before = sorted(p.name for p in release.iterdir())
    assert _predict(str(src), "-m", str(model), "-o", str(tmp_path / "out")) == 0
    assert sorted(p.name for p in release.iterdir()) == before


SIGINT_RUN = """
import sys
from napari_madgnet.cli import main
sys.exit(main(["predict", *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_image_and_logs_the_run(tmp_path, checkpoint) -> None:
    inputs = tmp_path / "in"
    _images(inputs, 6, shape=(96, 96))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    settings = ["--tile", "32", "--overlap", "0.5", "--device", "cpu"]  # slow enough to interrupt
    cmd = [sys.executable, "-c", SIGINT_RUN, str(inputs), "-m", str(checkpoint), "-o", str(out), "-q"]
    cmd += settings
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("*_mask.tif")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "not done (stopped; rerun with --skip-existing" in stdout
    log = _log(out)
    assert log["status"] == "interrupted"
    done = [f for f in log["files"] if f["status"] == "ok"]
    assert done and len(done) == log["summary"]["segmented"] < 6
    assert len(list(out.glob("*_mask.tif"))) == len(done)  # nothing half-written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    code = main(
        [
            "predict",
            str(inputs),
            "-m",
            str(checkpoint),
            "-o",
            str(out),
            "-q",
            "--skip-existing",
            "--geometry",
            "resize",
        ]
    )
    assert code == 0
    final = _log(out)
    assert [f["status"] for f in final["files"]].count("skipped") == len(done)
    assert len(list(out.glob("*_mask.tif"))) == 6
