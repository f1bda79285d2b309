"""The engine with the real MADGNet on tiny patches: resume, cancel, NaN, batch 1, classes, saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_madgnet.jobs import CancelToken
from napari_madgnet.training import TrainingError, data_from_arrays, iter_train, train
from napari_madgnet.training import engine as engine_mod

from .conftest import blobs


def _losses(history: list[dict]) -> list[float]:
    return [round(r["loss"], 6) for r in history]


def test_resume_repeats_the_uninterrupted_run(tmp_path, tiny_cfg) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    straight = train(tiny_cfg, data, out_dir=tmp_path / "a")

    token = CancelToken()
    events = []

    def stop_after_first_step(event) -> None:
        events.append(event)
        if event.details.get("step") == 1:
            token.cancel()

    stopped = train(
        tiny_cfg,
        data,
        out_dir=tmp_path / "b",
        cancel=token,
        callback=stop_after_first_step,
        model_path=tmp_path / "b.pt",
    )
    steps = [e for e in events if "step" in e.details]
    assert len(steps) == 1 and steps[0].details["eta_s"] >= 0
    # Stop behaves like a finished run: the best model so far is written where asked
    assert stopped.stopped == "cancelled" and stopped.steps == 1 and stopped.total_steps == 2
    assert stopped.model_path == tmp_path / "b.pt" and (tmp_path / "b.pt").is_file()
    assert (tmp_path / "b" / "best.pt").is_file()
    state = torch.load(tmp_path / "b" / "last_state.pt", weights_only=True)
    assert state["step"] == 1

    resumed = train(tiny_cfg, data, out_dir=tmp_path / "b", resume=True)
    assert _losses(resumed.history) == _losses(straight.history)
    assert len(straight.history) == 2 and "val" in straight.history[1]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_nan_loss_stops_and_keeps_last_good_state(tmp_path, tiny_cfg, monkeypatch) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    real = engine_mod.esdm_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == 2 else (loss, parts)

    monkeypatch.setattr(engine_mod, "esdm_loss", flaky)
    with pytest.raises(TrainingError, match="loss became nan at step 2"):
        train(tiny_cfg, data, out_dir=tmp_path)
    assert torch.load(tmp_path / "last_state.pt", weights_only=True)["step"] == 1


def test_batch_one_nested_classes_and_saved_model(tmp_path, tiny_cfg) -> None:
    from napari_madgnet.model import load_model

    image, labels = blobs()
    nested = (labels > 0).astype(np.uint8)
    nested[labels % 2 == 1] = 2  # inner class painted over the outer one
    nested[labels == 0] = 0
    cfg = tiny_cfg.replace(label_mode="nested", batch_size=1, accumulate=2, max_steps=1, backbone="resnet50")
    data = data_from_arrays(image, nested, cfg)
    assert data.num_classes == 2
    result = train(cfg, data, out_dir=tmp_path / "run", model_path=tmp_path / "m.pt")
    model = load_model(tmp_path / "m.pt")
    assert model.num_classes == 2
    prov = model.checkpoint_info["provenance"]
    assert prov["recipe"]["label_mode"] == "nested" and prov["steps"] == 1 and "trained_on" in prov
    assert model.checkpoint_info["preprocessing"]["channels"] == 1
    assert result.model_path == tmp_path / "m.pt"


def test_unwritable_output_fails_before_training(tmp_path, tiny_cfg) -> None:
    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="Cannot write"):
        next(iter_train(tiny_cfg, data, out_dir=tmp_path / "file" / "run"))


def test_dataloader_workers_give_the_same_batches(tiny_cfg, monkeypatch) -> None:
    """Each sample is drawn from (seed, index), so worker processes change nothing but speed."""
    from dataclasses import replace

    image, labels = blobs()
    data = data_from_arrays(image, labels, tiny_cfg)
    in_process = train(tiny_cfg, data)
    workers = []
    real_loader = engine_mod.DataLoader

    def spy(*args, **kwargs):
        workers.append(kwargs["num_workers"])
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(engine_mod, "DataLoader", spy)
    with_workers = train(replace(tiny_cfg, num_workers=2), data)
    assert workers and workers[0] == 2
    assert _losses(with_workers.history) == _losses(in_process.history)


def test_channels_last_changes_speed_not_results(tiny_cfg) -> None:
    """NHWC training (the CPU default) learns the same numbers; the model comes back NCHW."""
    image, labels = blobs()
    runs = {}
    for layout in (True, False):
        cfg = tiny_cfg.replace(channels_last=layout, backbone="resnet50")
        result = train(cfg, data_from_arrays(image, labels, cfg))
        assert all(p.is_contiguous() for p in result.model.parameters())
        runs[layout] = result
    # Losses, not weights: Adam turns rounding-level gradient differences into lr-sized steps.
    np.testing.assert_allclose(
        [r["loss"] for r in runs[True].history], [r["loss"] for r in runs[False].history], rtol=1e-3
    )


def test_cpu_layout_is_nhwc_in_fp32_only(tiny_cfg, monkeypatch) -> None:
    """oneDNN's NHWC bf16 weight gradient of dilated depthwise convolutions is wrong: never mix."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine_mod, "cpu_bf16_supported", lambda: True)
    assert engine_mod._memory_format(tiny_cfg.replace(cpu_amp=False), cpu) == torch.channels_last
    assert engine_mod._memory_format(tiny_cfg.replace(cpu_amp=True), cpu) == torch.contiguous_format
    assert engine_mod._memory_format(tiny_cfg.replace(channels_last=False), cpu) == torch.contiguous_format
    assert engine_mod._memory_format(tiny_cfg, torch.device("cuda")) == torch.contiguous_format
    with pytest.raises(ValueError, match="channels_last: false"):
        engine_mod._memory_format(tiny_cfg.replace(cpu_amp=True, channels_last=True), cpu)
