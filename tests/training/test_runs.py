"""Fine-tuning runs: reserved names and folders, continuing a run, disk space, failed saves and
cleaning up after a failed run (issue 16, items 1, 2, 3, 8)."""

from __future__ import annotations

import errno
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_madgnet.cli import main
from napari_madgnet.jobs import CancelToken
from napari_madgnet.locks import LockedError
from napari_madgnet.training import data_from_arrays, finetune, iter_finetune, resume_finetune, train
from napari_madgnet.training import engine as engine_mod
from napari_madgnet.training import runs as runs_mod
from napari_madgnet.training.runs import NoSpaceError, RunFolderError, UnfinishedRunError, read_run

from .conftest import blobs

# ``napari_madgnet.training.finetune`` the module (the package exports the function of that name)
finetune_mod = importlib.import_module("napari_madgnet.training.finetune")


@pytest.fixture
def cfg(tiny_cfg):
    """Two steps, a state saved after each, no validation: the least a run can be."""
    return tiny_cfg.replace(backbone="resnet50", val_fraction=0.0, early_stopping=None)


@pytest.fixture
def validated(cfg):
    """Three steps, validated after each: long enough to stop and continue past a best model."""
    return cfg.replace(val_fraction=0.2, max_steps=3, epochs=3)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from napari_madgnet.model import load_model

    return load_model(path).state_dict()


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def _stale_temp(target: Path) -> Path:
    """The temporary file a process killed while writing ``target`` leaves behind."""
    import subprocess
    import sys

    from napari_madgnet.locks import host_tag

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = target.with_name(f".{target.name}.{host_tag()}-{gone.pid}-abcd1234.tmp{target.suffix}")
    path.write_bytes(b"half")
    return path


def _to_step(job, step: int = 1) -> None:
    """Drive a fine-tuning generator until it reports ``step`` done (its state saved)."""
    for event in job:
        if event.details.get("step") == step:
            return
    raise AssertionError(f"the run ended before step {step}")


def test_a_second_run_with_the_same_name_is_refused_naming_the_first(tmp_path, cfg, models_home) -> None:
    image, labels = blobs()
    first = iter_finetune(image, labels, config=cfg, name="nuclei")
    _to_step(first)  # the first run holds its name, model file and run folder while it trains
    run_dir = models_home / "nuclei_run"
    with pytest.raises(LockedError) as refused:
        finetune(image, labels, config=cfg, name="nuclei")
    text = str(refused.value)
    assert "fine-tuning 'nuclei'" in text and str(run_dir) in text and "PID" in text
    # the same name with a model file elsewhere: the registry name is taken all the same
    with pytest.raises(LockedError, match="The model name 'nuclei' is in use by fine-tuning 'nuclei'"):
        finetune(image, labels, config=cfg, name="nuclei", out=tmp_path / "elsewhere" / "m.pt")
    assert not (tmp_path / "elsewhere").exists()
    while True:
        try:
            next(first)
        except StopIteration as stop:
            result = stop.value
            break
    assert result.model_path == models_home / "nuclei.pt" and result.stopped == "finished"
    assert [r["step"] for r in _log(run_dir)] == [1, 2]  # one run's log, not two interleaved
    assert not list(models_home.glob(".*.lock")) and not (run_dir / ".madgnet-run.lock").exists()
    with pytest.raises(FileExistsError, match=r"nuclei\.pt exists"):  # and never replaced afterwards
        finetune(image, labels, config=cfg, name="nuclei")


def test_runs_without_a_name_started_in_the_same_second_get_two_names(cfg, models_home, monkeypatch) -> None:
    monkeypatch.setattr(finetune_mod, "default_name", lambda: "finetuned-20250101-120000")
    image, labels = blobs()
    first = iter_finetune(image, labels, config=cfg)
    _to_step(first)
    second = finetune(image, labels, config=cfg.replace(max_steps=1))
    assert second.model_path == models_home / "finetuned-20250101-120000-2.pt"
    first.close()  # stopped from outside after a saved state: its folder stays, continuable
    assert read_run(models_home / "finetuned-20250101-120000_run").resumable


def test_a_new_run_never_writes_into_an_earlier_runs_folder(cfg, models_home) -> None:
    image, labels = blobs()
    killed = iter_finetune(image, labels, config=cfg, name="x")
    _to_step(killed)
    killed.close()  # as if killed after step 1: state kept, no model
    run_dir = models_home / "x_run"
    log_before = (run_dir / "train_log.jsonl").read_bytes()
    with pytest.raises(UnfinishedRunError, match=f"--resume {run_dir}") as refused:
        finetune(image, labels, config=cfg, name="x")
    assert refused.value.info.step == 1 and refused.value.run_dir == run_dir
    assert (run_dir / "train_log.jsonl").read_bytes() == log_before  # nothing appended
    assert read_run(run_dir).status == "failed"  # the refused run did not touch its run.json
    assert finetune_mod.resumable_run(finetune_mod.plan_output(name="x")) is not None
    # a finished run whose model was deleted: no resume, and no silent reuse either
    done = finetune(image, labels, config=cfg.replace(max_steps=1), name="y")
    done.model_path.unlink()
    with pytest.raises(RunFolderError, match="holds an earlier run"):
        finetune(image, labels, config=cfg, name="y")


def test_train_without_resume_starts_a_new_log(tmp_path, cfg) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, cfg)
    train(cfg, data, out_dir=tmp_path)
    train(cfg.replace(max_steps=1), data, out_dir=tmp_path)
    assert [r["step"] for r in _log(tmp_path)] == [1]


def test_a_failed_run_removes_what_it_made(tmp_path, cfg, models_home) -> None:
    image, labels = blobs()
    float_labels = labels.astype(np.float32)  # fails the data check, after the name was reserved
    with pytest.raises(Exception, match="not integers"):
        finetune(image, float_labels, config=cfg, name="bad")
    assert not models_home.exists()  # the models folder was made for this run: gone again
    out = tmp_path / "new" / "sub" / "m.pt"
    with pytest.raises(Exception, match="not integers"):
        finetune(image, float_labels, config=cfg, out=out, register=False)
    assert not (tmp_path / "new").exists()
    # a run that fails after saving a state keeps its folder: it can be continued
    real = engine_mod.esdm_loss
    calls = {"n": 0}

    def nan_at_step_2(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == 2 else (loss, parts)

    engine_mod.esdm_loss = nan_at_step_2
    try:
        with pytest.raises(engine_mod.TrainingError, match="loss became nan"):
            finetune(image, labels, config=cfg, name="nan")
    finally:
        engine_mod.esdm_loss = real
    info = read_run(models_home / "nan_run")
    assert info.status == "failed" and info.step == 1 and info.resumable
    assert "TrainingError" in info.manifest["error"]


@pytest.mark.slow
def test_stop_then_resume_equals_the_uninterrupted_run(validated, models_home) -> None:
    cfg = validated
    image, labels = blobs()
    straight = finetune(image, labels, config=cfg, name="straight")
    token = CancelToken()

    def stop_after_step_1(event) -> None:
        if event.details.get("step") == 1:
            token.cancel()

    stopped = finetune(image, labels, config=cfg, name="again", cancel=token, callback=stop_after_step_1)
    assert stopped.stopped == "cancelled" and stopped.steps == 1
    run_dir = models_home / "again_run"
    info = read_run(run_dir)
    assert info.status == "cancelled" and info.step == 1 and info.total_steps == 3 and info.resumable
    resumed = resume_finetune(run_dir, image, labels)
    assert resumed.stopped == "finished" and resumed.model_path == models_home / "again.pt"
    a, b = _weights(straight.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        [r["loss"] for r in _log(run_dir)], [r["loss"] for r in _log(models_home / "straight_run")], rtol=1e-6
    )
    assert read_run(run_dir).status == "finished"
    with pytest.raises(RunFolderError, match="nothing to continue"):
        resume_finetune(run_dir, image, labels)


def test_resume_checks_the_data_and_the_options(tmp_path, cfg, models_home, capsys) -> None:
    import tifffile

    image, labels = blobs()
    tifffile.imwrite(tmp_path / "i.tif", image)
    tifffile.imwrite(tmp_path / "l.tif", labels)
    killed = iter_finetune(
        image,
        labels,
        config=cfg,
        name="cli",
        sources={"image": tmp_path / "i.tif", "labels": tmp_path / "l.tif"},
    )
    _to_step(killed)
    killed.close()
    run_dir = models_home / "cli_run"
    manifest = read_run(run_dir).manifest
    assert manifest["inputs"]["image"]["path"] == str((tmp_path / "i.tif").resolve())
    assert len(manifest["inputs"]["labels"]["sha256"]) == 64
    assert main(["finetune", "--resume", str(run_dir), "--lr", "0.1"]) == 2
    assert "leave out --lr" in capsys.readouterr().err
    changed = labels.copy()
    changed[labels == 1] = 0  # one object less
    tifffile.imwrite(tmp_path / "l.tif", changed)
    assert main(["finetune", "--resume", str(run_dir)]) == 2
    assert "not the labels this run started with" in capsys.readouterr().err
    with pytest.raises(Exception, match="differ from those the run"):
        resume_finetune(run_dir, image, changed)  # arrays (a dock's layers): the fingerprint decides
    tifffile.imwrite(tmp_path / "moved.tif", labels)  # the right content under another name
    stale = [_stale_temp(run_dir / "last_state.pt"), _stale_temp(models_home / "cli.pt")]  # kill -9 leftovers
    code = main(["finetune", "--resume", str(run_dir), "--labels", str(tmp_path / "moved.tif")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert not any(p.exists() for p in stale)  # cleaned by the next run in those folders
    assert (models_home / "cli.pt").is_file() and [r["step"] for r in _log(run_dir)] == [1, 2]


def test_too_little_disk_space_is_refused_before_the_first_step(cfg, models_home, monkeypatch) -> None:
    image, labels = blobs()
    real = runs_mod.shutil.disk_usage

    def almost_full(path):
        return real(path)._replace(free=50 * 2**20)

    monkeypatch.setattr(runs_mod.shutil, "disk_usage", almost_full)
    with pytest.raises(NoSpaceError, match=r"needs about [\d.]+ [MG]B in .*full_run.*50 MB are free") as exc:
        finetune(image, labels, config=cfg, name="full")
    assert "MB" in str(exc.value)
    assert not (models_home / "full_run").exists()  # nothing left behind


@pytest.mark.parametrize("also_run_folder", [False, True])
def test_a_failed_final_save_keeps_the_weights_and_says_where(
    tmp_path, cfg, models_home, monkeypatch, capsys, also_run_folder
) -> None:
    import tempfile

    import tifffile

    image, labels = blobs()
    tifffile.imwrite(tmp_path / "i.tif", image)
    tifffile.imwrite(tmp_path / "l.tif", labels)
    scratch = tmp_path / "system-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = engine_mod.save_trained
    model_path = models_home / "full.pt"

    def disk_full(net, path, metadata):
        p = Path(path)
        rescue_in_run_folder = p.parent == models_home / "full_run" and "rescued" in p.name
        if p == model_path or (also_run_folder and rescue_in_run_folder):
            raise OSError(errno.ENOSPC, "No space left on device", str(p))
        return real(net, path, metadata)

    monkeypatch.setattr(engine_mod, "save_trained", disk_full)
    cfg.replace(max_steps=1).to_yaml(tmp_path / "recipe.yaml")
    data = ["--image", str(tmp_path / "i.tif"), "--labels", str(tmp_path / "l.tif")]
    code = main(["finetune", *data, "--name", "full", "--config", str(tmp_path / "recipe.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    kept = scratch if also_run_folder else models_home / "full_run"
    (rescued,) = kept.glob("full-rescued-*.pt")
    assert f"could not be written to {model_path} (No space left on device)" in out
    assert f"kept at {rescued}" in out and not model_path.exists()
    assert _weights(rescued).keys()  # a whole, loadable model


def test_finetune_cli_needs_data_or_resume(capsys) -> None:
    assert main(["finetune"]) == 2
    assert "--image FILE --labels FILE" in capsys.readouterr().err
