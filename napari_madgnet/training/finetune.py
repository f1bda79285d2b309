"""Fine-tuning on a user's own annotations: the one function the CLI, the widget and the demo call.

Everything the Fine-tune dock and ``madgnet finetune`` share lives here, so they cannot disagree:
where the model goes and under which registry name (``plan_output``), the data checks and the
validation split (``data_from_arrays``), stopping (the engine keeps the best model so far) and
registering the saved model so the Segment dock and ``madgnet predict`` find it by name.
All checks run before the network is built, so a mistake costs seconds, not a training run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_madgnet.errors import UserError
from napari_madgnet.jobs import CancelToken, Progress, run_to_end
from napari_madgnet.training.checkpoint import BEST_MODEL, LAST_STATE
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.data import items_from_arrays, items_from_folders, split_items
from napari_madgnet.training.engine import TrainData, TrainResult, check_writable, iter_train
from napari_madgnet.training.modelio import check_start_model
from napari_madgnet.training.runs import update_run_file

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
    ``note`` carries the data's warnings (labels without background, an image with no signal...).
    """
    notes: list[str] = []
    items, k = items_from_arrays(
        image,
        labels,
        label_mode=cfg.label_mode,
        normalization=cfg.normalization,
        num_classes=cfg.num_classes,
        axes=axes,
        channel=channel,
        name=name,
        range_per=cfg.range_per,
        notes=notes,
    )
    split = split_items(items, cfg.val_fraction, cfg.seed, cfg.patch_size)
    channels = items[0].image.shape[0]
    desc = f"{name}: {len(items)} annotated plane(s) of shape {items[0].shape}, {cfg.label_mode} labels"
    # a held-out-planes split is information, not a warning: it travels on its own
    note = " ".join([*notes, "" if split.heldout else split.note]).strip()
    return TrainData(
        split.train,
        split.val,
        k,
        channels,
        desc,
        note=note,
        heldout=list(split.heldout),
        heldout_note=split.note if split.heldout else "",
    )


def data_progress(data: TrainData) -> list[Progress]:
    """What the user should hear about the data before training: its warnings (``warning``),
    and which annotated planes validate (``heldout_planes``, not a warning)."""
    events = []
    if data.note:
        events.append(Progress(0.0, data.note, {"warning": True, "note": data.note}))
    if data.heldout:
        details = {"note": data.heldout_note, "heldout_planes": list(data.heldout)}
        events.append(Progress(0.0, data.heldout_note, details))
    return events


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


def default_name() -> str:
    """``finetuned-<date>-<time>``: the name of a run that was given none."""
    return f"finetuned-{dt.datetime.now():%Y%m%d-%H%M%S}"


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
    ``RegistryError`` for a bad name, ``FileExistsError`` when the model file exists. Running
    the plan reserves it (``iter_finetune``): a second run with the same name is refused.
    """
    from napari_madgnet.paths import models_dir
    from napari_madgnet.registry import check_name, name_from

    if out is not None:
        model_path = Path(out).expanduser()
        name = check_name(name) if name else name_from(model_path.stem)
    else:
        name = check_name(name) if name else default_name()
        model_path = Path(folder).expanduser() if folder else models_dir()
        model_path = model_path / f"{name}.pt"
    if model_path.exists():
        raise FileExistsError(f"{model_path} exists; choose another name or output file, or delete it first.")
    run_dir = Path(work_dir).expanduser() if work_dir else model_path.with_name(model_path.stem + "_run")
    # absolute: run.json must still find them when the run is continued from another folder
    return OutputPlan(model_path.absolute(), name, run_dir.absolute())


class Reservation:
    """What a running fine-tuning run holds: its registry name, model file and run folder, as
    lock files (``locks.FileLock``) that a second run with the same name or folders cannot take,
    and the folders it created (removed again when a failed run leaves nothing in them)."""

    def __init__(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.holder = f"fine-tuning '{plan.name}' (model {plan.model_path}, run folder {plan.run_dir})"
        self.locks: list[Any] = []
        self.created: list[Path] = []
        self.notes: list[str] = []

    def make_dirs(self, folder: Path) -> None:
        missing = []
        p = folder
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermissionError(
                f"Cannot create the folder {folder} ({exc.strerror or exc}); choose another with --out."
            ) from exc
        self.created.extend(reversed(missing))

    def lock(self, path: Path, resource: str) -> None:
        from napari_madgnet.locks import FileLock

        lock = FileLock(
            path,
            resource,
            self.holder,
            name=self.plan.name,
            model_path=str(self.plan.model_path),
            run_dir=str(self.plan.run_dir),
        )
        note = lock.acquire()
        self.locks.append(lock)
        if note:
            self.notes.append(note)

    def release(self, *, remove_created: bool = False) -> None:
        """Give the locks back; ``remove_created``: also the folders this run made, when empty."""
        while self.locks:
            self.locks.pop().release()
        if remove_created:
            for folder in reversed(self.created):
                try:
                    folder.rmdir()  # only when empty: never anything but what this run made
                except OSError:
                    break
            self.created.clear()


def reserve_output(plan: OutputPlan, *, register: bool = True) -> Reservation:
    """Take the locks of ``plan``: its registry name (when it will be registered), its model file
    and its run folder (created here). Raises ``locks.LockedError`` naming the run that holds one;
    the caller releases the returned ``Reservation`` when the run ends, however it ends."""
    from napari_madgnet.paths import models_dir
    from napari_madgnet.training.runs import LOCK_NAME

    res = Reservation(plan)
    try:
        if register:
            registry = models_dir()
            res.make_dirs(registry)
            res.lock(registry / f".name-{plan.name.lower()}.lock", f"The model name '{plan.name}'")
        res.make_dirs(plan.model_path.parent)
        res.lock(
            plan.model_path.with_name(f".{plan.model_path.name}.lock"), f"The model file {plan.model_path}"
        )
        res.make_dirs(plan.run_dir)
        res.lock(plan.run_dir / LOCK_NAME, f"The run folder {plan.run_dir}")
    except BaseException:
        res.release(remove_created=True)
        raise
    return res


def _reserve(
    out: str | os.PathLike[str] | None,
    name: str | None,
    folder: str | os.PathLike[str] | None,
    work_dir: str | os.PathLike[str] | None,
    register: bool,
) -> tuple[OutputPlan, Reservation]:
    """Plan and reserve; a run given no name takes the first free ``finetuned-<time>[-N]``, so two
    runs started in the same second get two names instead of one refusal."""
    from napari_madgnet.locks import LockedError
    from napari_madgnet.training.runs import LOCK_NAME

    if out is not None or name:
        plan = plan_output(out, name, folder=folder, work_dir=work_dir)
        return plan, reserve_output(plan, register=register)
    base = default_name()
    for i in range(1, 100):
        candidate = base if i == 1 else f"{base}-{i}"
        try:
            plan = plan_output(None, candidate, folder=folder, work_dir=work_dir)
            if register and _registered(candidate):
                continue
            return plan, reserve_output(plan, register=register)
        except FileExistsError:
            continue
        except LockedError as exc:
            if exc.path.name == LOCK_NAME and work_dir is not None:
                raise  # the given run folder is busy whatever the name
            continue
    raise UserError(f"No free model name {base}-N found; pass --name.")


def _registered(name: str) -> bool:
    from napari_madgnet.registry import list_models

    return any(e.name.lower() == name.lower() for e in list_models(read=False))


def register_output(plan: OutputPlan) -> tuple[str, str | None]:
    """Make a saved model findable by name: a model in the models folder is listed as it is; one
    saved elsewhere gets an index card. Returns (the name to use, a warning or None): a taken
    name is not an error, the model file is saved all the same and usable by its path."""
    from napari_madgnet.paths import models_dir
    from napari_madgnet.registry import list_models, register_model

    path = plan.model_path
    if path.parent.resolve() == models_dir().resolve():
        return path.stem, None
    for entry in list_models(read=False):  # a continued run: its card is there already
        if entry.name.lower() == plan.name.lower() and entry.path.resolve() == path.resolve():
            return entry.name, None
    try:
        return register_model(path, plan.name).name, None
    except (UserError, FileExistsError) as exc:
        return str(path), f"The model was saved to {path} but not listed in the models folder: {exc}"


def resumable_run(plan: OutputPlan) -> Any:
    """The ``runs.RunInfo`` of the earlier run in ``plan``'s run folder when it can be continued
    (a dock offers "Continue" then); None when the folder holds no such run."""
    from napari_madgnet.training.runs import RunFolderError, read_run

    try:
        info = read_run(plan.run_dir)
    except RunFolderError:
        return None
    return info if info.resumable else None


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
    sources: dict[str, str | os.PathLike[str]] | None = None,
    keep_run: str = "none",
) -> Generator[Progress, None, TrainResult]:
    """Fine-tune on one annotated image/stack; yields Progress, returns the TrainResult.

    Output: see ``plan_output`` (``out`` or ``folder``/``name``). ``register``: list the model by
    name afterwards (``register_output``). Stopping through ``cancel`` keeps the best model so far
    (``result.stopped == "cancelled"``). ``image``: numpy, dask or zarr (read in this generator,
    i.e. in the caller's worker thread). ``axes``/``channel``: the image's layout.
    ``sources``: ``{"image": path, "labels": path}``, the files the arrays were read from (the
    CLI): ``run.json`` keeps their paths and sha256, so ``iter_resume_finetune`` finds and checks
    them.

    The run holds its name, model file and run folder (``reserve_output``) until it ends: a second
    run with the same name or folder is refused with ``locks.LockedError`` naming this one. A run
    folder that holds an earlier run is refused (``runs.UnfinishedRunError`` when that run can be
    continued with ``iter_resume_finetune``). A run that fails before its first saved state
    removes what it made; one that fails later keeps its folder, which can be continued.
    ``keep_run``: what the run folder keeps after a successful run (``disk.KEEP_RUN``; default:
    the log and ``run.json``). The result carries the Otsu baseline of the validation part and a
    warning when the model does not beat it (``baseline``), and what is on disk.
    """
    from napari_madgnet.training import disk
    from napari_madgnet.training.encoder_weights import check_init

    disk.check_keep_run(keep_run)
    cfg = config or TrainConfig.finetune(from_model=str(from_model) if from_model else None)
    if from_model is not None:
        cfg = cfg.replace(from_model=str(from_model))
    cfg.validate()
    if out is not None or name:
        plan_output(out, name, folder=folder, work_dir=work_dir)  # a taken name fails before any work
    check_start_model(cfg)
    if not cfg.from_model:
        check_init(cfg.init, cfg.backbone)  # offline without the ImageNet file: say so now
    plan, reservation = _reserve(out, name, folder, work_dir, register)
    ours = failed = False  # ours: the run folder is this run's (not an earlier run's)
    try:
        for note in reservation.notes:
            yield Progress(0.0, note, {"warning": True, "note": note})
        _prepare_run_folder(plan)
        ours = True
        check_writable(plan.model_path.parent)
        data = data_from_arrays(image, labels, cfg, axes=axes, channel=channel, name=image_name)
        yield from data_progress(data)
        _write_manifest(plan, cfg, data, register, axes, channel, image_name, sources, keep_run)
        return (
            yield from _train(
                plan, cfg, data, register=register, cancel=cancel, resume=False, keep_run=keep_run
            )
        )
    except BaseException as exc:
        failed = True
        if ours:
            _record_failure(plan, exc, remove=True)
        raise
    finally:
        reservation.release(remove_created=failed and not _kept_anything(plan))


def iter_resume_finetune(
    run_dir: str | os.PathLike[str],
    image: Any = None,
    labels: Any = None,
    *,
    cancel: CancelToken | None = None,
    device: str | None = None,
    register: bool | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Continue a fine-tuning run from its folder after a kill, a crash or Stop; yields Progress.

    Everything comes from the folder: settings, model file and name, data layout (``run.json``)
    and model, optimiser, scheduler and scaler state, step and history (``last_state.pt``), so
    the continued run ends as the uninterrupted one would have (sampling depends only on the seed
    and the sample's index). ``image``/``labels``: the data the run started with, as arrays (a
    dock's layers) or file paths; None: the files ``run.json`` names (CLI runs). Files must have
    the sha256 the run started with, and the annotated planes the same fingerprint, else
    ``UserError``. ``device``: train on another device than the run did. ``register``: None as the
    run was started. A run that has not saved a state yet starts again from step 0 with its
    settings. Raises ``runs.RunFolderError`` when there is nothing to continue.
    """
    from napari_madgnet.hashing import sha256_file
    from napari_madgnet.training.runs import RunFolderError, data_fingerprint, now, read_run

    info = read_run(run_dir)
    if info.status == "running":
        raise RunFolderError(f"{info.run_dir}: this run is still going ({info.describe()}).", info.run_dir)
    if not info.resumable:
        raise RunFolderError(
            f"{info.run_dir}: this run ended ({info.describe()}); there is nothing to continue.", info.run_dir
        )
    manifest = info.manifest
    plan = OutputPlan(info.model_path, info.name, info.run_dir)
    register = bool(manifest.get("register", True)) if register is None else register
    cfg = TrainConfig.from_dict(manifest["config"])
    if device:
        cfg = cfg.replace(device=device)
    reservation = reserve_output(plan, register=register)
    try:
        for note in reservation.notes:
            yield Progress(0.0, note, {"warning": True, "note": note})
        _remove_stale_temps(plan)  # a killed run's interrupted writes
        if plan.model_path.exists() and sha256_file(plan.model_path) != manifest.get("model_sha256"):
            raise RunFolderError(
                f"{plan.model_path} is not the model this run saved; move it away before continuing the run, "
                "which writes its model there.",
                plan.run_dir,
            )
        image = _resume_input(manifest, image, "image", lazy=True)
        labels = _resume_input(manifest, labels, "labels", lazy=False)
        data = data_from_arrays(
            image,
            labels,
            cfg,
            axes=manifest.get("axes"),
            channel=manifest.get("channel"),
            name=manifest.get("image_name", "image"),
        )
        if data_fingerprint(data) != manifest.get("data_sha256"):
            raise UserError(
                f"The image and labels differ from those the run in {plan.run_dir} started with; resuming "
                "needs the same data. Start a new run for changed data."
            )
        for event in data_progress(data):
            if "heldout_planes" in event.details:  # the warnings were said when the run started
                yield event
        state = (plan.run_dir / LAST_STATE).is_file()
        if not state:
            note = "The run had not saved a state yet: it starts again from step 0 with its settings."
            yield Progress(0.0, note, {"warning": True, "note": note})
        update_run_file(plan.run_dir, status="running", resumed_at=now(), pid=os.getpid())
        keep_run = manifest.get("keep_run", "none")
        return (
            yield from _train(
                plan, cfg, data, register=register, cancel=cancel, resume=state, keep_run=keep_run
            )
        )
    except BaseException as exc:
        _record_failure(plan, exc, remove=False)  # the run stays continuable as it was
        raise
    finally:
        reservation.release()


def _resume_input(manifest: dict[str, Any], given: Any, role: str, *, lazy: bool) -> Any:
    """The array to continue with: ``given`` (an array or a path) or the file ``run.json`` names,
    files checked against the sha256 the run started with."""
    from napari_madgnet.io import read_image, read_mask
    from napari_madgnet.training.runs import check_file_record

    def read(path: Any) -> Any:  # as `madgnet finetune` reads them: labels as label values
        return read_mask(path) if role == "labels" else read_image(path, lazy=lazy)

    record = (manifest.get("inputs") or {}).get(role)
    if given is not None and not isinstance(given, str | os.PathLike):
        return given
    if record is None:
        if given is None:
            raise UserError(
                f"This run was started from arrays (a napari layer), not files: give the {role} to continue "
                "it (the Fine-tune dock continues it with the same layers)."
            )
        return read(given)
    return read(check_file_record(record, given, role))


def _prepare_run_folder(plan: OutputPlan) -> None:
    """Refuse a folder holding an earlier run; clean what killed writers left in our folders."""
    from napari_madgnet.training.runs import check_new_run_folder

    check_new_run_folder(plan.run_dir)
    _remove_stale_temps(plan)


def _remove_stale_temps(plan: OutputPlan) -> None:
    from napari_madgnet.io import remove_stale_temp_files

    remove_stale_temp_files(plan.run_dir)
    remove_stale_temp_files(plan.model_path.parent)


def _write_manifest(
    plan: OutputPlan,
    cfg: TrainConfig,
    data: TrainData,
    register: bool,
    axes: str | None,
    channel: int | None,
    image_name: str,
    sources: dict[str, str | os.PathLike[str]] | None,
    keep_run: str,
) -> None:
    from napari_madgnet import __version__
    from napari_madgnet.locks import host_name
    from napari_madgnet.training.engine import total_steps
    from napari_madgnet.training.runs import RUN_FORMAT, data_fingerprint, file_record, now, write_run_file

    write_run_file(
        plan.run_dir,
        {
            "format": RUN_FORMAT,
            "format_version": 1,
            "name": plan.name,
            "model_path": str(plan.model_path),
            "register": register,
            "axes": axes,
            "channel": channel,
            "image_name": image_name,
            "keep_run": keep_run,
            "inputs": {role: file_record(path) for role, path in (sources or {}).items()},
            "data_sha256": data_fingerprint(data),
            "config": cfg.to_dict(),
            "total_steps": total_steps(cfg, data),
            "status": "running",
            "created_at": now(),
            "host": host_name(),
            "pid": os.getpid(),
            "package_version": __version__,
        },
    )


def _train(
    plan: OutputPlan,
    cfg: TrainConfig,
    data: TrainData,
    *,
    register: bool,
    cancel: Any,
    resume: bool,
    keep_run: str = "none",
) -> Generator[Progress, None, TrainResult]:
    """The engine on a reserved plan; then ``run.json`` says how it ended, and the model is listed."""
    from napari_madgnet.hashing import sha256_file

    result = yield from iter_train(
        cfg, data, out_dir=plan.run_dir, cancel=cancel, model_path=plan.model_path, resume=resume
    )
    saved = result.model_path if result.save_error is None else None
    update_run_file(
        plan.run_dir,
        status=result.stopped,
        steps=result.steps,
        total_steps=result.total_steps,
        model_sha256=sha256_file(saved) if saved is not None else None,
        save_error=result.save_error,
    )
    list_result(result, plan, register)
    finish_result(result, data, keep_run)
    return result


def list_result(result: TrainResult, plan: OutputPlan, register: bool) -> None:
    """Name ``result``'s model after ``plan`` and, with ``register``, list it (``register_output``);
    a model saved elsewhere after a failed save (``result.save_error``) is not listed, and says so."""
    result.model_name = plan.model_path.stem
    if result.save_error is not None:
        if register:
            result.warnings.append(f"The model was not listed as '{plan.name}' (it is not where it belongs).")
    elif register and result.model_path is not None:
        result.model_name, warning = register_output(plan)
        if warning:
            result.warnings.append(warning)


def finish_result(result: TrainResult, data: TrainData, keep_run: str = "none") -> TrainResult:
    """After a run: the Otsu baseline on the validation part (and a warning when the model is not
    better), then the run folder tidied by ``keep_run`` and what is kept recorded."""
    from napari_madgnet.training import disk
    from napari_madgnet.training.baseline import baseline_warning, otsu_baseline

    result.baseline_dice = otsu_baseline(data.train, data.val)
    if data.heldout:
        result.heldout_planes = list(data.heldout)
        result.heldout_dice = result.best.get("dice")
        result.heldout_threshold_dice = result.baseline_dice
    warning = baseline_warning(result.best.get("dice"), result.baseline_dice)
    if warning:
        result.warnings.append(warning)
    result.disk = disk.tidy_run_dir(result.out_dir, result.model_path, keep_run, result.stopped)
    return result


def _kept_anything(plan: OutputPlan) -> bool:
    """A failed run keeps its folder once it holds a state or a model to continue from."""
    return any((plan.run_dir / f).exists() for f in (LAST_STATE, BEST_MODEL))


def _record_failure(plan: OutputPlan, exc: BaseException, *, remove: bool) -> None:
    """A failed run's folder: its ``run.json`` says why when something is kept; else (``remove``)
    the run's files go, and with them the folder when this run created it."""
    from napari_madgnet.training.runs import RUN_FILE, TRAIN_LOG

    if _kept_anything(plan) or not remove:
        with contextlib.suppress(OSError):
            update_run_file(plan.run_dir, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return
    for name in (RUN_FILE, TRAIN_LOG):
        with contextlib.suppress(OSError):
            (plan.run_dir / name).unlink(missing_ok=True)


def finetune(
    image: Any,
    labels: Any,
    *,
    callback: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``iter_finetune`` driven to the end, with an optional progress callback."""
    return run_to_end(iter_finetune(image, labels, **kwargs), callback)


def resume_finetune(
    run_dir: str | os.PathLike[str],
    image: Any = None,
    labels: Any = None,
    *,
    callback: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``iter_resume_finetune`` driven to the end, with an optional progress callback."""
    return run_to_end(iter_resume_finetune(run_dir, image, labels, **kwargs), callback)


def heldout_report(result: TrainResult) -> str:
    """"Dice on held-out planes (Z 18): 0.845, a threshold gets 0.790": a sparse stack's run, the
    model's validation Dice on the annotated planes it did not train on, next to the Otsu floor
    (``training.baseline``) on the same planes; "" when the run did not hold out planes."""
    if not result.heldout_planes or result.heldout_dice is None:
        return ""
    from napari_madgnet.training.data import plane_names_text

    text = f"Dice on held-out planes ({plane_names_text(result.heldout_planes)}): {result.heldout_dice:.3f}"
    if result.heldout_threshold_dice is not None:
        text += f", a threshold gets {result.heldout_threshold_dice:.3f}"
    return text


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
    if result.save_error:
        text += f". {result.save_error.rstrip('.')}"
    elif result.model_path is not None:
        named = (
            f" as '{result.model_name}'"
            if result.model_name and result.model_name != str(result.model_path)
            else ""
        )
        text += f", saved{named} to {result.model_path}"
    baseline = getattr(result, "baseline_dice", None)
    if getattr(result, "heldout_planes", None) and dice is not None:
        text += f". {heldout_report(result)}"
    elif baseline is not None and dice is not None:
        text += f". A plain Otsu threshold scores {baseline:.3f} on the same validation pixels"
    kept = getattr(result, "disk", None)
    if kept is not None:
        return f"{text}. {kept.describe()}"
    if result.out_dir is not None:
        text += f". Run folder (log, resumable state): {result.out_dir}"
    return text + "."
