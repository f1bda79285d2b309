"""Fine-tuning on a user's own annotations: the one function the CLI, the widget and the demo call.

Everything the Fine-tune dock and ``madgnet finetune`` share lives here, so they cannot disagree:
where the model goes and under which registry name (``plan_output``), the data checks and the
validation split (``data_from_arrays``), stopping (the engine keeps the best model so far) and
registering the saved model so the Segment dock and ``madgnet predict`` find it by name.
All checks run before the network is built, so a mistake costs seconds, not a training run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_madgnet.errors import UserError
from napari_madgnet.jobs import CancelToken, Progress, run_to_end
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.data import items_from_arrays, items_from_folders, split_items
from napari_madgnet.training.engine import TrainData, TrainResult, check_writable, iter_train
from napari_madgnet.training.modelio import check_start_model

#: Entry-point group through which training recipes (``src_train``) offer named datasets; the
#: core never imports them by name.
DATASET_ENTRY_POINTS = "napari_madgnet.datasets"


def data_from_arrays(
    image: Any,
    labels: Any,
    cfg: TrainConfig,
    *,
    axes: str | None = None,
    channel: int | None = None,
    name: str = "image",
) -> TrainData:
    """Check and split an image and its labels (2-D, stack, time series, RGB) into a TrainData.

    ``axes``/``channel``: the image's layout, as ``InferenceConfig`` takes it (None: from shapes).
    """
    items, k = items_from_arrays(
        image,
        labels,
        label_mode=cfg.label_mode,
        normalization=cfg.normalization,
        num_classes=cfg.num_classes,
        axes=axes,
        channel=channel,
        name=name,
    )
    split = split_items(items, cfg.val_fraction, cfg.seed, cfg.patch_size)
    channels = items[0].image.shape[0]
    desc = f"{name}: {len(items)} annotated plane(s) of shape {items[0].shape}, {cfg.label_mode} labels"
    return TrainData(split.train, split.val, k, channels, desc, note=split.note)


def dataset_provider(name: str) -> Callable[..., Any]:
    """The function a recipe package registered for dataset ``name`` (entry point group
    ``napari_madgnet.datasets``; ``src_train`` registers the paper's five). Raises ConfigError."""
    from importlib.metadata import entry_points

    from napari_madgnet.errors import ConfigError

    found = {ep.name.lower(): ep for ep in entry_points(group=DATASET_ENTRY_POINTS)}
    ep = found.get(name.lower())
    if ep is None:
        known = ", ".join(sorted(e.name for e in found.values())) or "none installed"
        raise ConfigError(
            f"Unknown dataset {name!r} (known: {known}). The paper's datasets come with the training "
            "recipes (src_train, installed with napari-madgnet); for your own data set "
            "data.train_images and data.train_masks instead."
        )
    return ep.load()


def data_from_config(cfg: TrainConfig) -> TrainData:
    """The data a recipe names: image/mask folders, or a named dataset and its root."""
    d = cfg.data
    if d.dataset:
        train_items, val_items, _tests = dataset_provider(d.dataset)(d.dataset, d.root, cfg)
        return TrainData(train_items, val_items, cfg.num_classes or 1, 3, f"{d.dataset} ({d.root})")
    if not (d.train_images and d.train_masks):
        raise UserError(
            "The recipe names no data: set data.train_images and data.train_masks (folders of "
            "image/mask pairs matched by name), or data.dataset and data.root (see src_train/)."
        )
    k = cfg.num_classes or 1
    items = items_from_folders(d.train_images, d.train_masks, cfg, k)
    note = ""
    if d.val_images and d.val_masks:
        train_items, val_items = items, items_from_folders(d.val_images, d.val_masks, cfg, k)
    else:
        split = split_items(items, cfg.val_fraction, cfg.seed)
        train_items, val_items, note = split.train, split.val, split.note
    first = items[0].load()
    return TrainData(
        train_items, val_items, k, first.image.shape[0], f"{d.train_images} ({len(items)} pairs)", note=note
    )


@dataclass(frozen=True)
class OutputPlan:
    """Where a fine-tuned model is written, the registry name it gets, and its run folder."""

    model_path: Path
    name: str
    run_dir: Path


def plan_output(
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> OutputPlan:
    """The model file, registry name and run folder of a fine-tuning run; checked, not created.

    ``out``: the model file (any folder; a model outside the models folder is registered by an
    index card after training). Else ``folder``/``name``.pt (default folder: the models folder;
    default name: ``finetuned-<date>-<time>``). Names follow ``registry.check_name``. The run
    folder (checkpoints, log) defaults to ``<model stem>_run`` beside the model. Raises
    ``RegistryError`` for a bad name, ``FileExistsError`` when the model file exists.
    """
    from napari_madgnet.paths import models_dir
    from napari_madgnet.registry import check_name, name_from

    if out is not None:
        model_path = Path(out).expanduser()
        name = check_name(name) if name else name_from(model_path.stem)
    else:
        name = check_name(name) if name else f"finetuned-{dt.datetime.now():%Y%m%d-%H%M%S}"
        model_path = Path(folder).expanduser() if folder else models_dir()
        model_path = model_path / f"{name}.pt"
    if model_path.exists():
        raise FileExistsError(f"{model_path} exists; choose another name or output file, or delete it first.")
    run_dir = Path(work_dir) if work_dir else model_path.with_name(model_path.stem + "_run")
    return OutputPlan(model_path, name, run_dir)


def register_output(plan: OutputPlan) -> tuple[str, str | None]:
    """Make a saved model findable by name: a model in the models folder is listed as it is; one
    saved elsewhere gets an index card. Returns (the name to use, a warning or None): a taken
    name is not an error, the model file is saved all the same and usable by its path."""
    from napari_madgnet.paths import models_dir
    from napari_madgnet.registry import register_model

    path = plan.model_path
    if path.parent.resolve() == models_dir().resolve():
        return path.stem, None
    try:
        return register_model(path, plan.name).name, None
    except (UserError, FileExistsError) as exc:
        return str(path), f"The model was saved to {path} but not listed in the models folder: {exc}"


def iter_finetune(
    image: Any,
    labels: Any,
    *,
    config: TrainConfig | None = None,
    from_model: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    register: bool = True,
    work_dir: str | os.PathLike[str] | None = None,
    axes: str | None = None,
    channel: int | None = None,
    cancel: CancelToken | None = None,
    image_name: str = "image",
    keep_run: str = "none",
) -> Generator[Progress, None, TrainResult]:
    """Fine-tune on one annotated image/stack; yields Progress, returns the TrainResult.

    Output: see ``plan_output`` (``out`` or ``folder``/``name``). ``register``: list the model by
    name afterwards (``register_output``). Stopping through ``cancel`` keeps the best model so far
    (``result.stopped == "cancelled"``). ``image``: numpy, dask or zarr (read in this generator,
    i.e. in the caller's worker thread). ``axes``/``channel``: the image's layout. ``keep_run``:
    what the run folder keeps after a successful run (``disk.KEEP_RUN``; default: the log only);
    a failed run leaves no empty folder. The result carries the Otsu baseline of the validation
    part and a warning when the model does not beat it (``baseline``), and what is on disk.
    """
    from napari_madgnet.training import disk
    from napari_madgnet.training.encoder_weights import check_init

    disk.check_keep_run(keep_run)
    cfg = config or TrainConfig.finetune(from_model=str(from_model) if from_model else None)
    if from_model is not None:
        cfg = cfg.replace(from_model=str(from_model))
    cfg.validate()
    plan = plan_output(out, name, folder=folder, work_dir=work_dir)
    check_start_model(cfg)
    if not cfg.from_model:
        check_init(cfg.init, cfg.backbone)  # offline without the ImageNet file: say so now
    check_writable(plan.model_path.parent)
    data = data_from_arrays(image, labels, cfg, axes=axes, channel=channel, name=image_name)
    if data.note:
        yield Progress(0.0, data.note, {"warning": True, "note": data.note})
    existed = plan.run_dir.exists()
    try:
        result = yield from iter_train(
            cfg, data, out_dir=plan.run_dir, cancel=cancel, model_path=plan.model_path
        )
    except BaseException:
        disk.remove_if_empty(plan.run_dir, existed)
        raise
    result.model_name = plan.model_path.stem
    if register and result.model_path is not None:
        result.model_name, warning = register_output(plan)
        if warning:
            result.warnings.append(warning)
    finish_result(result, data, keep_run)
    return result


def finish_result(result: TrainResult, data: TrainData, keep_run: str = "none") -> TrainResult:
    """After a run: the Otsu baseline on the validation part (and a warning when the model is not
    better), then the run folder tidied by ``keep_run`` and what is kept recorded."""
    from napari_madgnet.training import disk
    from napari_madgnet.training.baseline import baseline_warning, otsu_baseline

    result.baseline_dice = otsu_baseline(data.train, data.val)
    warning = baseline_warning(result.best.get("dice"), result.baseline_dice)
    if warning:
        result.warnings.append(warning)
    result.disk = disk.tidy_run_dir(result.out_dir, result.model_path, keep_run, result.stopped)
    return result


def finetune(
    image: Any,
    labels: Any,
    *,
    callback: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``iter_finetune`` driven to the end, with an optional progress callback."""
    return run_to_end(iter_finetune(image, labels, **kwargs), callback)


def describe_result(result: TrainResult) -> str:
    """One paragraph for the CLI and the dock: how training ended, what was kept where."""
    how = {
        "finished": "Finished",
        "cancelled": "Stopped",
        "early_stopping": f"Stopped early at step {result.steps} of {result.total_steps} "
        "(the validation Dice had stopped improving)",
    }.get(result.stopped, result.stopped)
    dice = result.best.get("dice")
    kept = "the best validated model" if dice is not None else "the last model (nothing was validated)"
    text = f"{how} after {result.steps} step(s): kept {kept}"
    if dice is not None:
        text += f" (validation Dice {dice:.3f} at step {result.best.get('step')})"
    if result.model_path is not None:
        named = f" as '{result.model_name}'" if result.model_name and result.model_name != str(
            result.model_path
        ) else ""
        text += f", saved{named} to {result.model_path}"
    baseline = getattr(result, "baseline_dice", None)
    if baseline is not None and dice is not None:
        text += f". A plain Otsu threshold scores {baseline:.3f} on the same validation pixels"
    kept = getattr(result, "disk", None)
    if kept is not None:
        return f"{text}. {kept.describe()}"
    if result.out_dir is not None:
        text += f". Run folder (log, resumable state): {result.out_dir}"
    return text + "."
