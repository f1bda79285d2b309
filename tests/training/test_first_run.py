"""A newcomer's first runs (issue 13): the offline start, the time estimate, the Otsu floor,
what stays on disk, and the CLI's share of each (the Fine-tune dock uses the same functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_madgnet.cli import main
from napari_madgnet.jobs import Cancelled, CancelToken, Progress
from napari_madgnet.model import pretrained
from napari_madgnet.model.pretrained import PretrainedWeightsError, WeightFile
from napari_madgnet.training import TrainConfig, data_from_arrays, finetune
from napari_madgnet.training.disk import format_bytes
from napari_madgnet.training.encoder_weights import check_init, choose_init, encoder_weights_status
from napari_madgnet.training.estimate import RunClock, StepCosts, calibrate, format_duration, plan_time
from napari_madgnet.training.finetune import describe_result

from .conftest import blobs

NOWHERE = "http://127.0.0.1:9/"  # the discard port: connection refused, as offline


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No download is possible: every weight address points at a closed port."""
    monkeypatch.setenv("MADGNET_ALLOW_INSECURE_MIRROR", "1")
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", NOWHERE)


def _pair(folder: Path, shape=(96, 96)) -> list[str]:
    import tifffile

    image, labels = blobs(shape)
    tifffile.imwrite(folder / "i.tif", image)
    tifffile.imwrite(folder / "l.tif", labels)
    return ["--image", str(folder / "i.tif"), "--labels", str(folder / "l.tif")]


SMALL = ["--backbone", "resnet50", "--patch-size", "64", "--batch-size", "2", "--device", "cpu"]


# --------------------------------------------------------------------------- ImageNet weights
def test_offline_the_status_says_why_and_the_default_start_is_random_weights(offline) -> None:
    status = encoder_weights_status("resnet50", timeout=2.0)
    assert not status.cached and status.downloadable is False and not status.usable
    assert "no internet" in status.reason and status.filename in status.note()
    init, note = choose_init(None, "resnet50")
    assert init == "scratch" and "random weights" in note
    assert choose_init("imagenet", "resnet50") == ("imagenet", None)  # asked for: kept, fails fast
    with pytest.raises(PretrainedWeightsError) as info:
        check_init("imagenet", "resnet50")
    assert len(str(info.value)) < 320 and "--init scratch" in str(info.value)
    assert "fetch_" not in str(info.value) and "()" not in str(info.value)  # no function names


def test_online_and_cached_weights_are_usable(server, publish, monkeypatch) -> None:
    base, root = server
    name = publish(root, "resnet50", b"weights")
    monkeypatch.setitem(pretrained.IMAGENET_WEIGHTS, "resnet50", WeightFile(name, base))
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", base)
    status = encoder_weights_status("resnet50")
    assert status.downloadable and not status.cached and "downloaded once" in status.note()
    assert choose_init(None, "resnet50") == ("imagenet", None)
    pretrained.weights_dir().mkdir(parents=True, exist_ok=True)
    (pretrained.weights_dir() / name).write_bytes(b"weights")
    monkeypatch.setenv("MADGNET_WEIGHTS_URL", NOWHERE)  # cached: no request is needed
    assert encoder_weights_status("resnet50").cached


def test_cli_offline_trains_from_random_weights_by_default(tmp_path, models_home, offline, capsys) -> None:
    args = ["finetune", *_pair(tmp_path), *SMALL, "--steps", "2", "--validate-every", "2", "--name", "off"]
    assert main(args) == 0
    _out, err = capsys.readouterr()
    assert "note: The ImageNet starting weights are not on this computer" in err
    from napari_madgnet.model import read_checkpoint_info

    assert read_checkpoint_info(models_home / "off.pt")["provenance"]["started_from"] == "scratch"


def test_cli_offline_imagenet_asked_for_fails_in_one_short_line_and_leaves_no_folder(
    tmp_path, models_home, offline, capsys
) -> None:
    args = ["finetune", *_pair(tmp_path), *SMALL, "--steps", "2", "--init", "imagenet", "--name", "x"]
    assert main(args) == 2
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("madgnet: error:"))
    assert len(line) < 340 and "random weights" in line and "Traceback" not in err
    assert not (models_home / "x_run").exists() and not (models_home / "x.pt").exists()


# ------------------------------------------------------------------------------- time estimate
def test_format_duration_speaks_plainly() -> None:
    assert format_duration(3) == "about 5 s"
    assert format_duration(41) == "about 40 s"
    assert format_duration(250) == "about 4 min"
    assert format_duration(4800) == "about 1 h 20 min"


def test_calibration_measures_steps_and_a_validation_and_scales_to_the_plan(tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    cfg = tiny_cfg.replace(checkpoint_every=50).with_length(steps=7, validate_every=3)
    data = data_from_arrays(image, labels, cfg)
    costs = calibrate(cfg, data, steps=3)
    assert costs.per_step_s > 0 and costs.per_validation_s > 0 and costs.device == "cpu"
    estimate = plan_time(cfg, data, costs)
    assert (estimate.steps, estimate.validations) == (7, 3)  # at steps 3, 6 and the last, 7
    expected = costs.setup_s + 7 * costs.per_step_s + 3 * costs.per_validation_s
    assert estimate.total_s == pytest.approx(expected)
    assert "per step x 7" in estimate.describe() and "per check x 3" in estimate.describe()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        calibrate(cfg, data, cancel=token)


def test_run_clock_costs_steps_and_validations_apart() -> None:
    """Steps of 1 s, validation passes of 5 s every 2 steps of 6: after step 2 (validated) there
    are 4 steps and 2 passes left: 4 x 1 + 2 x 5 = 14 s."""
    now = [0.0]
    clock = RunClock(validate_every=2, clock=lambda: now[0])

    def step(n: int, validated: bool = False) -> object:
        if validated:
            now[0] += 1.0  # the step itself
            clock.update(Progress(n / 6, "validating...", {"phase": "validating"}))
            now[0] += 5.0
        else:
            now[0] += 1.0
        return clock.update(Progress(n / 6, "", {"step": n, "total_steps": 6}))

    step(1)
    estimate = step(2, validated=True)
    assert estimate.remaining_s == pytest.approx(14.0)
    assert estimate.costs.per_validation_s == pytest.approx(5.0)
    assert step(6, validated=True).remaining_s == 0.0
    # before any pass is measured, a calibration's cost stands in for it
    prior = RunClock(validate_every=2, prior=StepCosts(1.0, 3.0), clock=lambda: 0.0)
    prior.update(Progress(0.1, "", {"step": 1, "total_steps": 4}))
    assert prior.estimate.remaining_s == pytest.approx(3 * 1.0 + 2 * 3.0)


def test_cli_estimate_only_measures_and_writes_nothing(tmp_path, models_home, capsys) -> None:
    args = ["finetune", *_pair(tmp_path), *SMALL, "--init", "scratch", "--steps", "20", "--estimate"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimated time: about") and "x 20" in out
    assert not models_home.exists() or not any(models_home.iterdir())


# ------------------------------------------------------------------------ Otsu floor and disk
def test_a_model_below_the_otsu_floor_is_called_out_and_the_run_folder_keeps_the_log(
    tmp_path, tiny_cfg
) -> None:
    image, labels = blobs((128, 96))
    cfg = tiny_cfg.replace(checkpoint_every=100)  # the state is written once, at the end
    result = finetune(image, labels, config=cfg, out=tmp_path / "m.pt", register=False)
    assert result.baseline_dice is not None and result.baseline_dice > 0.8  # bright discs on noise
    assert result.best["dice"] < result.baseline_dice  # two steps from random weights
    assert any("not better than a simple threshold" in w for w in result.warnings)
    text = describe_result(result)
    assert f"Otsu threshold scores {result.baseline_dice:.3f}" in text
    run = tmp_path / "m_run"
    assert sorted(p.name for p in run.iterdir()) == ["run.json", "train_log.jsonl"]  # run.json: how it ended
    assert result.disk.removed_bytes > 0 and format_bytes(result.disk.model_bytes) in text
    assert "training state removed" in text and str(run) in text


def test_dark_objects_get_a_fair_threshold_and_several_classes_get_none(tiny_cfg) -> None:
    from napari_madgnet.training.baseline import otsu_baseline

    image, labels = blobs((128, 96))
    data = data_from_arrays(255 - image, labels, tiny_cfg)
    assert otsu_baseline(data.train, data.val) > 0.8
    multi = tiny_cfg.replace(label_mode="multiclass")
    labels2 = (labels > 0).astype("uint16") + (labels > 3).astype("uint16")
    data2 = data_from_arrays(image, labels2, multi)
    assert otsu_baseline(data2.train, data2.val) is None


def test_keep_run_resume_keeps_what_continuing_needs(tmp_path, tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    cfg = tiny_cfg.replace(checkpoint_every=100)
    result = finetune(image, labels, config=cfg, out=tmp_path / "m.pt", register=False, keep_run="resume")
    assert sorted(p.name for p in (tmp_path / "m_run").iterdir()) == [
        "best.pt",
        "last_state.pt",
        "run.json",
        "train_log.jsonl",
    ]
    assert result.disk.removed_bytes == 0 and "continue the run" in describe_result(result)


def test_a_stopped_run_keeps_its_state_and_a_failed_one_leaves_no_folder(tmp_path, tiny_cfg) -> None:
    image, labels = blobs((128, 96))
    token = CancelToken()
    cfg = tiny_cfg.replace(max_steps=50, epochs=50, checkpoint_every=100)

    def stop_after_first(p: Progress) -> None:
        if p.details.get("step") == 1:
            token.cancel()

    result = finetune(
        image,
        labels,
        config=cfg,
        out=tmp_path / "s.pt",
        register=False,
        cancel=token,
        callback=stop_after_first,
    )
    assert result.stopped == "cancelled" and (tmp_path / "s_run" / "last_state.pt").is_file()
    early = CancelToken()
    early.cancel()
    with pytest.raises(Cancelled):
        finetune(image, labels, config=cfg, out=tmp_path / "f.pt", register=False, cancel=early)
    assert not (tmp_path / "f_run").exists()


def test_keep_run_is_checked_before_any_work(tiny_cfg) -> None:
    from napari_madgnet.errors import ConfigError

    image, labels = blobs()
    with pytest.raises(ConfigError, match="keep_run 'some'"):
        finetune(image, labels, config=tiny_cfg, keep_run="some")


# ------------------------------------------------------------------------------------- presets
def test_first_model_preset_is_the_demos_and_the_clis() -> None:
    from napari_madgnet.demo import demo_config
    from napari_madgnet.training.presets import first_model_config

    cfg = first_model_config()
    assert (cfg.init, cfg.patch_size, cfg.batch_size, cfg.lr, cfg.planned_steps()) == (
        "scratch",
        64,
        4,
        2e-3,
        400,
    )
    assert demo_config().to_dict() == cfg.to_dict()
    assert first_model_config(from_model="x").lr == TrainConfig.finetune(from_model="x").lr


def _options(parser, command=()):
    """(command words, option) for every option of every sub-command, sub-sub-commands too."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*command, name))
        elif action.option_strings and action.dest not in ("help", "version"):
            yield command, action


def test_every_option_of_every_command_states_its_default_once(capsys) -> None:
    from napari_madgnet.cli import build_parser

    options = list(_options(build_parser()))
    assert {c[0] for c, _ in options} >= {
        "predict",
        "finetune",
        "train",
        "evaluate",
        "export",
        "compare",
        "models",
    }
    unclear = [
        f"madgnet {' '.join(command)} {action.option_strings[-1]}: {action.help!r}"
        for command, action in options
        if (action.help or "").count("default:") + (action.help or "").count("(required") != 1
    ]
    assert not unclear, "\n".join(unclear)
    for command in (["predict"], ["finetune"], ["export"], ["models", "add"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert "(default: None)" not in " ".join(capsys.readouterr().out.split()), command
