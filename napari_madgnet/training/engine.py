"""The training loop: a generator of progress events, checkpoints, validation and resumption.

``iter_train`` yields ``jobs.Progress`` after every optimiser step (details: step, epoch, loss,
loss parts, lr, validation metrics, ETA) and returns a ``TrainResult``; ``train`` drives it with
an optional callback. The CLI, the Fine-tune widget (in a thread worker) and ``src_train`` all
use these two functions.

A step is deterministic in (config, data, step): samples come from ``data.TrainStream``, whose
randomness is seeded per sample (no global generator is used or reseeded, so a run inside napari
leaves the process's random state alone), and the state file restores model, optimiser, scheduler
and scaler, so a run resumed from ``last_state.pt`` repeats the uninterrupted run's losses on CPU.

Stopping (the widget's Stop, Ctrl-C or SIGTERM in the CLI, through a ``CancelToken``) ends the
run after the current step like a finished one: the state is saved for resuming, and the best
validated model (or the last one, when nothing was validated yet) is written to ``model_path``;
the result says ``stopped="cancelled"``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from napari_madgnet.device import autocast, cpu_bf16_supported, resolve_device
from napari_madgnet.errors import UserError
from napari_madgnet.io import remove_stale_temp_files
from napari_madgnet.jobs import Cancelled, CancelToken, Progress, run_to_end
from napari_madgnet.training import checkpoint as ckpt
from napari_madgnet.training import distributed
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.data import AnyItem, StreamSampler, TrainStream, check_patch_size
from napari_madgnet.training.host_memory import keep_freed_memory
from napari_madgnet.training.losses import esdm_loss
from napari_madgnet.training.modelio import build_model, save_trained, unwrap
from napari_madgnet.training.runs import TRAIN_LOG, check_space, rescue_save


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what was kept."""


@dataclass
class TrainData:
    """Checked training and validation items and what the model must know about them."""

    train: list[AnyItem]
    val: list[AnyItem]
    num_classes: int
    channels: int
    description: str = ""
    note: str = ""  # what the user should know about the split (e.g. no validation part)
    #: the stack planes held out for validation (``data.plane_name``, 0-based), when whole
    #: annotated planes validate (``data.hold_out_planes``), and the sentence that says so
    heldout: list[str] = field(default_factory=list)
    heldout_note: str = ""


@dataclass
class TrainResult:
    """What a finished (or early-stopped) run produced."""

    model: nn.Module
    history: list[dict[str, Any]]
    best: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None
    model_path: Path | None = None
    #: "finished", "early_stopping" (no better validation Dice for ``early_stopping`` validations)
    #: or "cancelled" (the user stopped: the best model so far, else the last one, was kept)
    stopped: str = "finished"
    total_steps: int = 0  # the planned number of optimiser steps
    model_name: str | None = None  # the registry name the saved model is listed under
    warnings: list[str] = field(default_factory=list)
    #: set when the model could not be written where asked: what happened and where it was kept
    #: instead (``model_path`` then names that place)
    save_error: str | None = None
    #: how a continued run started (``training.continued``): the run folder and whether its
    #: optimiser state was used ("restored") or not ("fresh", with the reason)
    continued: dict[str, Any] | None = None
    baseline_dice: float | None = None  # an Otsu threshold's Dice on the validation part
    #: a sparse stack's run (validation on whole held-out annotated planes): the planes
    #: (``data.plane_name``, 0-based), the model's validation Dice on them (that of the kept model)
    #: and the Otsu floor's on the same planes (``baseline_dice``); else [] and None
    heldout_planes: list[str] = field(default_factory=list)
    heldout_dice: float | None = None
    heldout_threshold_dice: float | None = None
    disk: Any = None  # training.disk.DiskUse: what the run kept where (fine-tuning only)

    @property
    def steps(self) -> int:
        """Optimiser steps done (all sessions of a resumed run)."""
        return int(self.history[-1]["step"]) if self.history else 0


class _Stages(nn.Module):
    """``forward`` = ``forward_stages``, so DDP's hooks see the deep-supervision outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.module.forward_stages(x)


def _lr_factor(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "constant":
            return 1.0
        t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        if cfg.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t)) * 0.99 + 0.01
        return (1 - t) ** 0.9 * 0.99 + 0.01  # poly

    return factor


def steps_per_epoch(cfg: TrainConfig, data: TrainData, world: int) -> int:
    """Configured, or one pass over the items (resize) / their pixels in patches (patch)."""
    if cfg.steps_per_epoch:
        return int(cfg.steps_per_epoch)
    per_step = cfg.batch_size * cfg.accumulate * world
    if cfg.sampling == "resize":
        return max(1, math.ceil(len(data.train) / per_step))
    pixels = sum(math.prod(it.shape) for it in data.train if hasattr(it, "image"))
    patches = pixels / cfg.patch_size**2 if pixels else len(data.train)
    return max(1, math.ceil(patches / per_step))


def total_steps(cfg: TrainConfig, data: TrainData, world: int = 1) -> int:
    total = cfg.epochs * steps_per_epoch(cfg, data, world)
    return min(total, cfg.max_steps) if cfg.max_steps else total


def validate(
    model: nn.Module, items: Sequence[AnyItem], cfg: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """Dice per validation item and class (on annotated pixels) under the deployment predictor.

    Each item is predicted exactly as ``madgnet predict`` would predict it with the saved model:
    the engine's runner (the fast inference copy, made once per validation pass) and the one tiler
    (``inference.plane``): patch-trained models as blended tiles of the patch size, models trained
    on resized images resized to that size. Pixels count as foreground at the deployment threshold
    (``PostprocessConfig().threshold``); Dice is ``metrics.dice`` on the annotated pixels.
    """
    from napari_madgnet.inference.config import InferenceConfig, default_tile_size
    from napari_madgnet.inference.plane import predict_plane
    from napari_madgnet.inference.runner import Runner
    from napari_madgnet.metrics import dice

    deploy = InferenceConfig()
    # not cached: the weights change between validations (a cached copy would outlive them)
    runner = Runner(unwrap(model), device, mixed_precision=cfg.amp, cache=False)
    geometry = "tiles" if cfg.sampling == "patch" else "resize"
    # the tile predict uses for this model (a multiple of the patch; inference.config)
    tile = default_tile_size({"tile_size": cfg.patch_size} if geometry == "tiles" else {}, cfg.patch_size)
    scores: list[float] = []
    per_class: list[list[float]] = []
    for it in items:
        item = it.load()
        probs = predict_plane(
            np.ascontiguousarray(item.image.transpose(1, 2, 0)),
            runner,
            geometry=geometry,
            input_size=cfg.patch_size,
            tile_size=tile,
            overlap=deploy.overlap,
            batch_size=runner.batch_size,
        ).numpy()
        pred = probs > deploy.postprocess.threshold
        dices = []
        for k in range(item.target.shape[0]):
            annotated = item.valid[k] > 0
            dices.append(dice(pred[k][annotated], item.target[k][annotated]))
        per_class.append(dices)
        scores.append(float(np.mean(dices)))
    del runner
    return {
        "dice": float(np.mean(scores)) if scores else float("nan"),
        "dice_per_class": np.mean(per_class, axis=0).tolist() if per_class else [],
    }


def _duplicate_single(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batch size 1: add the horizontally flipped sample, so BatchNorm sees two values."""
    return {k: torch.cat([v, v.flip(-1)]) for k, v in batch.items()}


def _model_metadata(cfg: TrainConfig, data: TrainData, history: list[dict], best: dict) -> dict[str, Any]:
    import datetime as dt

    from napari_madgnet import __version__

    return {
        "preprocessing": {
            "normalization": cfg.normalization,
            "range_per": cfg.range_per,  # inference fits intensity ranges the same way
            "input_size": cfg.patch_size if cfg.sampling == "resize" else None,
            "tile_size": cfg.patch_size if cfg.sampling == "patch" else None,
            "channels": data.channels,
            "label_mode": cfg.label_mode,
            "num_classes": data.num_classes,
        },
        "provenance": {
            "trained_on": data.description,
            "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "recipe": cfg.to_dict(),
            "steps": history[-1]["step"] if history else 0,
            "validation": best,
            "validated_on": data.heldout or None,  # held-out stack planes (0-based), if any
            "started_from": cfg.from_model or cfg.init,
            "package_version": __version__,
        },
    }


def iter_train(
    cfg: TrainConfig,
    data: TrainData,
    *,
    out_dir: str | Path | None = None,
    model: nn.Module | None = None,
    resume: bool | str | Path = False,
    cancel: CancelToken | None = None,
    model_path: str | Path | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train, yielding a ``Progress`` after each optimiser step; return a ``TrainResult``.

    ``out_dir`` receives ``last_state.pt`` (resume), ``best.pt`` (a saved model), and
    ``train_log.jsonl``; ``resume=True`` continues from ``out_dir/last_state.pt`` (or give a
    path): model, optimiser, scheduler, scaler, step and history are restored (the start model
    is not needed again), and the log is cut back to the restored step, so it ends up as the
    uninterrupted run's. Without ``resume`` the log starts empty. ``model_path``: where the final
    model (the best validated weights) is saved with ``save_model``. Cancelling stops after the
    current step, saves the state and returns like a finished run (``stopped="cancelled"``, the
    best model so far written to ``model_path``); ``jobs.Cancelled`` is raised only when no step
    was done.

    Before the first step the free disk space is checked (``runs.check_space``: the state and
    model sizes are known once the network is built). When the final save fails (a full disk),
    the model is saved in the run folder or the system's temporary folder instead and
    ``result.save_error`` says where; when even that fails, ``TrainingError`` names the state.

    ``optimizer_state``: an Adam ``state_dict`` of an earlier run of this very ``model``
    (``training.continued``): its moments are kept, this config's learning rate and weight decay
    apply.
    """
    cfg.validate()
    if not data.train:
        raise ValueError("No training items; annotate at least one image or plane.")
    if cfg.sampling == "patch":
        check_patch_size(data.train, cfg.patch_size)
    device = resolve_device(cfg.device)
    info = distributed.setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    out = Path(out_dir) if out_dir else (Path(cfg.out_dir) if cfg.out_dir else None)
    if out is not None and info.is_main:
        check_writable(out)
        remove_stale_temp_files(out)  # left by a killed run's interrupted atomic write
    state_path = None
    if resume:
        state_path = out / ckpt.LAST_STATE if isinstance(resume, bool) and out else None
        state_path = Path(resume) if not isinstance(resume, bool) else state_path
        if state_path is None:
            raise ValueError("resume=True needs out_dir (where last_state.pt is).")

    # The weights' initialisation is the only user of torch's global generator: seed it inside
    # fork_rng, so the caller's process (napari) keeps its own random state. Sampling and
    # augmentation draw from generators seeded by (seed, sample index): see data.TrainStream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if model is not None:
            net = model
        elif state_path is not None:
            # the state holds every weight: no start model to find, no ImageNet download
            net = build_model(cfg.replace(from_model=None, init="scratch"), data.num_classes)
        else:
            net = build_model(cfg, data.num_classes)
    layout = _memory_format(cfg, device)
    net.to(device, memory_format=layout).train()
    optim = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        # only the per-parameter moments: the old groups' lr (and the old schedule's initial_lr,
        # which the new scheduler would keep) must not override this run's settings
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": saved["params"]}
            for g, saved in zip(optim.param_groups, optimizer_state["param_groups"], strict=True)
        ]
        optim.load_state_dict({"state": optimizer_state["state"], "param_groups": groups})
    total = total_steps(cfg, data, info.world)
    per_epoch = steps_per_epoch(cfg, data, info.world)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _lr_factor(cfg, total))
    use_fp16 = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)

    start, history, best, bad = 0, [], {"dice": -1.0}, 0
    if state_path is not None:
        state = ckpt.load_state(state_path)
        net.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, history, best, bad = state["step"], list(state["history"]), dict(state["best"]), state["bad"]
    if out is not None and info.is_main:
        check_space(net, out, Path(model_path) if model_path is not None else None)
        _restart_log(out / TRAIN_LOG, start)

    wrapped: nn.Module = _Stages(net)
    if info.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None
        )
    stream = TrainStream(data.train, cfg, cfg.batch_size, info.world)
    sampler = StreamSampler(
        cfg.batch_size, start * cfg.accumulate, (total - start) * cfg.accumulate, info.rank, info.world
    )
    loader = DataLoader(
        stream,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # the loader draws its workers' base seed from this, not from the process's generator
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    batches = iter(loader)

    def save_last(step: int) -> None:
        if out is None or not info.is_main:
            return
        try:
            _save_state(step)
        except OSError as exc:
            raise TrainingError(
                f"Could not save the training state to {out / ckpt.LAST_STATE} at step {step} "
                f"({exc.strerror or exc}). The state saved before it is kept there: free some space and "
                "continue the run from it."
            ) from exc

    def _save_state(step: int) -> None:
        ckpt.save_state(
            out / ckpt.LAST_STATE,
            {
                "model": unwrap(net).state_dict(),
                "optimizer": optim.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "history": history,
                "best": best,
                "bad": bad,
                "config": cfg.to_dict(),
                "num_classes": data.num_classes,
            },
        )

    def log(record: dict[str, Any]) -> None:
        if out is not None and info.is_main:
            with open(out / TRAIN_LOG, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    stopped = "finished"
    t0 = time.perf_counter()
    images = 0
    step = start
    # CPU: the same activations are freed and allocated every step; keep their pages mapped.
    host_memory = ExitStack()
    host_memory.enter_context(keep_freed_memory(device.type == "cpu"))
    try:
        for step in range(start, total):
            if distributed.any_rank(cancel is not None and cancel.cancelled, info, device):
                if step == 0:
                    raise Cancelled("Cancelled before the first training step; nothing was saved.")
                stopped = "cancelled"
                save_last(step)
                break
            loss_sum, parts_sum = 0.0, {"map": 0.0, "distance": 0.0, "boundary": 0.0}
            for micro in range(cfg.accumulate):
                batch = next(batches)
                if batch["image"].shape[0] == 1:
                    batch = _duplicate_single(batch)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                batch["image"] = batch["image"].contiguous(memory_format=layout)
                sync = not info.enabled or micro == cfg.accumulate - 1
                ctx = wrapped.no_sync() if not sync else _null()
                with ctx:
                    with _train_autocast(device, cfg):
                        stages = wrapped(batch["image"])
                    loss, parts = esdm_loss(stages, batch, cfg.loss, scribble=cfg.label_mode == "scribble")
                    if not torch.isfinite(loss):
                        kept = f"; the last good state {out / ckpt.LAST_STATE} is kept" if out else ""
                        raise TrainingError(
                            f"The loss became {float(loss.detach())} at step {step + 1}{kept}. Lower the "
                            "learning rate (--lr), keep gradient clipping on, or turn AMP off (amp: false)."
                        )
                    scaler.scale(loss / cfg.accumulate).backward()
                loss_sum += float(loss.detach()) / cfg.accumulate
                for k in parts_sum:
                    parts_sum[k] += parts[k] / cfg.accumulate
                images += batch["image"].shape[0] * info.world
            if cfg.clip_value:
                scaler.unscale_(optim)
                torch.nn.utils.clip_grad_value_(net.parameters(), cfg.clip_value)
            scaler.step(optim)
            scaler.update()
            optim.zero_grad(set_to_none=True)
            lr = optim.param_groups[0]["lr"]
            sched.step()

            done = step + 1
            epoch = (done - 1) // per_epoch + 1
            record: dict[str, Any] = {
                "step": done,
                "epoch": epoch,
                "loss": loss_sum,
                "lr": lr,
                "parts": parts_sum,
            }
            end_of_epoch = done % per_epoch == 0 or done == total
            if end_of_epoch and data.val:
                # a validation pass can take longer than the steps between two: say so first
                yield Progress(done / total, f"step {done}/{total}: validating...", {"phase": "validating"})
                metrics = validate(net, data.val, cfg, device)
                record["val"] = metrics
                if metrics["dice"] > best["dice"]:
                    best = {"dice": metrics["dice"], "step": done, "epoch": epoch, **metrics}
                    bad = 0
                    if out is not None and info.is_main:
                        save_trained(
                            net, out / ckpt.BEST_MODEL, _model_metadata(cfg, data, [*history, record], best)
                        )
                else:
                    bad += 1
            history.append(record)
            log(record)
            elapsed = time.perf_counter() - t0
            eta = elapsed / (done - start) * (total - done)
            record_out = {
                **record,
                "eta_s": eta,
                "images_per_s": images / max(elapsed, 1e-9),
                "total_steps": total,
            }
            if end_of_epoch and cfg.early_stopping and bad >= cfg.early_stopping:
                stopped = "early_stopping"
            if done % cfg.checkpoint_every == 0 or done == total or stopped != "finished":
                save_last(done)
            val_txt = f", val Dice {record['val']['dice']:.3f}" if "val" in record else ""
            yield Progress(done / total, f"step {done}/{total}, loss {loss_sum:.4f}{val_txt}", record_out)
            if stopped != "finished":
                break
    finally:
        host_memory.close()

    # The result is the best validated network (the last one when nothing was validated).
    distributed.barrier(info)  # rank 0 has written best.pt before anyone reads it
    if out is not None and best.get("step") and (out / ckpt.BEST_MODEL).is_file():
        from napari_madgnet.model import load_model

        best_net = load_model(out / ckpt.BEST_MODEL, device=device)
        unwrap(net).load_state_dict(best_net.state_dict())
    net.eval()
    saved = None
    final = unwrap(net).to(memory_format=torch.contiguous_format)  # as a loaded model would be
    metadata = _model_metadata(cfg, data, history, best)
    # The returned model says how it must be applied (patch-sized tiles, normalisation), as if
    # it had been loaded from the saved file, so inference treats both the same way.
    final.checkpoint_info = {"config": final.config.to_dict(), **metadata}
    save_error = None
    if model_path is not None and info.is_main:
        from napari_madgnet.model import read_checkpoint_info

        try:
            saved = save_trained(final, model_path, metadata)
        except OSError as exc:
            saved, save_error = rescue_save(
                lambda p: save_trained(final, p, metadata), Path(model_path), [out] if out else [], exc
            )
            if saved is None:
                state = f"the training state {out / ckpt.LAST_STATE}" if out else "nothing"
                raise TrainingError(
                    f"{save_error} {state} holds the trained weights: continue the run once there is "
                    "space, and the model is written again."
                ) from exc
        final.checkpoint_info = read_checkpoint_info(saved)
    result = TrainResult(final, history, best if best.get("step") else {}, out, saved, stopped, total)
    result.save_error = save_error
    return result


def train(
    cfg: TrainConfig,
    data: TrainData,
    *,
    callback: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> TrainResult:
    """Run ``iter_train`` to the end, passing each ``Progress`` to ``callback``."""
    return run_to_end(iter_train(cfg, data, **kwargs), callback)


def _cpu_bf16(device: torch.device, cfg: TrainConfig) -> bool:
    return device.type == "cpu" and cfg.cpu_amp and cpu_bf16_supported()


def _train_autocast(device: torch.device, cfg: TrainConfig) -> Any:
    """CUDA: device.autocast; CPU: bf16 autocast where the hardware has bf16 units (cfg.cpu_amp)."""
    if _cpu_bf16(device, cfg):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return autocast(device, cfg.amp)


def _memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """NHWC for CPU training in fp32 (oneDNN then skips its layout reorders), else NCHW.

    Not with bf16 autocast on the CPU: there, oneDNN's weight gradient of the dilated depthwise
    convolutions (the MFMSA branches) in NHWC is wrong, with NaN or 1e34 values in a third of the
    calls (torch 2.13, Zen 4; reproduced in isolation), while NCHW gives the right values.
    """
    bf16_on_cpu = _cpu_bf16(device, cfg)
    if cfg.channels_last and bf16_on_cpu:
        raise ValueError(
            "channels_last with bf16 autocast on the CPU trains on wrong gradients (a oneDNN fault in "
            "dilated depthwise convolutions); set channels_last: false (or cpu_amp: false)."
        )
    nhwc = cfg.channels_last if cfg.channels_last is not None else device.type == "cpu" and not bf16_on_cpu
    return torch.channels_last if nhwc else torch.contiguous_format


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _restart_log(path: Path, keep_until: int) -> None:
    """Start the step log of a run: empty for a new run; for a resumed one, the records up to the
    restored step (steps logged after the last state was saved are done again)."""
    if keep_until <= 0:
        if path.exists():
            path.unlink()
        return
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= keep_until:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    from napari_madgnet.io import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def check_writable(folder: Path) -> None:
    """Fail before training if the output folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"Cannot write to the output folder {folder} ({exc.strerror or exc}); choose another with --out."
        ) from exc


__all__ = ["TrainData", "TrainResult", "TrainingError", "check_writable", "iter_train", "train", "validate"]
