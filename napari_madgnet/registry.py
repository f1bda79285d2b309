"""The user's models folder: what models exist, what they were trained on, and loading them by name.

Shared by the CLI (``madgnet models``, ``madgnet predict --model NAME``) and the widgets. The
folder is ``paths.models_dir()`` (``MADGNET_MODELS_DIR``). It holds two kinds of entry:

- ``NAME.pth``: a checkpoint in the project format (fine-tuned models, converted releases);
  its metadata is read from the file (memory-mapped, no weights built).
- ``NAME.json``: a small index card pointing to a checkpoint elsewhere, e.g. the authors'
  released ``.pth.tar`` files, which are registered where they are and never modified.

Listing reads metadata only and caches it by (file, size, mtime), so it stays fast with many
large checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from napari_madgnet.errors import UserError
from napari_madgnet.io import atomic_path
from napari_madgnet.paths import models_dir

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".pth.tar", ".ckpt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CACHE_FILE = ".metadata-cache.json"

#: The authors' released models: folder name -> (registry name, data set, modality).
OFFICIAL_MODELS: dict[str, tuple[str, str, str]] = {
    "PolypSegData": ("madgnet-polyp", "Kvasir-SEG + CVC-ClinicDB (PolypSegData)", "polyp endoscopy"),
    "DSB2018": ("madgnet-nuclei-dsb2018", "2018 Data Science Bowl (DSB2018)", "nuclei microscopy"),
    "ISIC2018": ("madgnet-skin-isic2018", "ISIC 2018 skin lesions", "dermoscopy"),
    "COVID19": ("madgnet-covid19-ct", "COVID-19 infection (COVID19)", "COVID-19 CT/X-ray"),
    "BUSI": ("madgnet-breast-us-busi", "Breast Ultrasound Images (BUSI)", "breast ultrasound"),
}
#: What the released models were trained with (IS2D_main.py: resize 352, ToTensor, no mean/std).
RELEASE_PREPROCESSING: dict[str, Any] = {"normalization": "scale255", "input_size": 352, "channels": 3}

_lock = threading.Lock()
_memory_cache: dict[str, dict[str, Any]] = {}


class RegistryError(UserError):
    """A model name or file the registry cannot use; the message says what to do."""


@dataclass
class ModelEntry:
    """One registered model, as ``madgnet models list`` shows it."""

    name: str
    path: Path
    kind: str  # "checkpoint" (a file in the folder) or "link" (an index card to a file elsewhere)
    source: str = ""
    encoder: str | None = None
    num_classes: int | None = None
    trained_on: str | None = None
    modality: str | None = None
    description: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _checkpoint_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(CHECKPOINT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _stem(path: Path) -> str:
    suffix = _checkpoint_suffix(path) or path.suffix
    return path.name[: -len(suffix)] if suffix else path.name


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _metadata_cache_file() -> Path | None:
    """The on-disk metadata cache: in the models folder only, never beside a user's checkpoint
    (a release folder is not ours to write into); None when the models folder does not exist."""
    root = models_dir()
    return root / _CACHE_FILE if root.is_dir() else None


def checkpoint_metadata(path: Path) -> dict[str, Any]:
    """``read_checkpoint_info`` of a file (config, preprocessing, provenance), cached by
    (path, size, mtime) in memory and in the models folder's ``.metadata-cache.json``."""
    from napari_madgnet.model import read_checkpoint_info

    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = _metadata_cache_file()
    with _lock:
        if key in _memory_cache:
            return _memory_cache[key]
        disk: dict[str, Any] = {}
        if cache_path is not None:
            try:
                disk = json.loads(cache_path.read_text())
            except (OSError, ValueError):
                disk = {}
        if key in disk:
            _memory_cache[key] = disk[key]
            return disk[key]
    info = read_checkpoint_info(path)
    meta = _jsonable({k: info.get(k) for k in ("format", "config", "preprocessing", "provenance")})
    with _lock:
        _memory_cache[key] = meta
        if cache_path is not None:
            disk[key] = meta
            # a read-only folder still lists, only slower
            with contextlib.suppress(OSError), atomic_path(cache_path, overwrite=True) as tmp:
                tmp.write_text(json.dumps(disk))
    return meta


def cached_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of ``path`` if it is already cached (no file is opened); else None."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    with _lock:
        return _memory_cache.get(key)


def _entry_from_checkpoint(path: Path, name: str | None = None, *, read: bool = True) -> ModelEntry:
    """An entry for a checkpoint file; ``read=False`` fills only what the cache already knows
    (pickers list names on the GUI thread and must not open 130 MB files there)."""
    entry = ModelEntry(name=name or _stem(path), path=path, kind="checkpoint")
    if not read:
        meta = cached_metadata(path)
        if meta is None:
            return entry
    else:
        try:
            meta = checkpoint_metadata(path)
        except Exception as exc:  # a broken file is listed with its problem, not hidden
            entry.available, entry.problem = False, f"{type(exc).__name__}: {exc}"
            return entry
    config = meta.get("config") or {}
    prov = meta.get("provenance") or {}
    entry.encoder = config.get("backbone")
    entry.num_classes = config.get("num_classes")
    entry.preprocessing = dict(meta.get("preprocessing") or {})
    entry.source = str(prov.get("source") or ("project checkpoint" if meta.get("format") else "state dict"))
    entry.trained_on = prov.get("trained_on") or prov.get("dataset")
    entry.modality = prov.get("modality")
    entry.description = prov.get("description")
    return entry


def _entry_from_card(card: Path) -> ModelEntry:
    try:
        data = json.loads(card.read_text())
        target = Path(data["path"]).expanduser()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ModelEntry(_stem(card), card, "link", available=False, problem=f"unreadable index card: {exc}")
    entry = ModelEntry(
        name=str(data.get("name") or card.stem),
        path=target,
        kind="link",
        source=str(data.get("source") or "linked checkpoint"),
        encoder=data.get("encoder"),
        num_classes=data.get("num_classes"),
        trained_on=data.get("trained_on"),
        modality=data.get("modality"),
        description=data.get("description"),
        preprocessing=dict(data.get("preprocessing") or {}),
    )
    if not target.is_file():
        entry.available, entry.problem = False, f"{target} is missing (moved or deleted?)"
    return entry


def list_models(directory: str | os.PathLike[str] | None = None, *, read: bool = True) -> list[ModelEntry]:
    """All models in the folder, sorted by name; unusable ones are listed with ``problem`` set.

    ``read=False`` lists names, paths and index cards without opening any checkpoint (what is
    already cached is filled in): fast enough for a GUI thread.
    """
    root = Path(directory) if directory else models_dir()
    if not root.is_dir():
        return []
    entries: dict[str, ModelEntry] = {}
    for item in sorted(root.iterdir()):
        if item.name.startswith("."):
            continue
        if item.suffix == ".json":
            entry = _entry_from_card(item)
        elif _checkpoint_suffix(item) and item.is_file():
            entry = _entry_from_checkpoint(item, read=read)
        else:
            continue
        entries.setdefault(entry.name, entry)
    return sorted(entries.values(), key=lambda e: e.name)


def resolve_model(
    name_or_path: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None
) -> ModelEntry:
    """The one resolver: a registered name (case-insensitive) or a checkpoint path -> ``ModelEntry``.

    Names are looked up first (the registry folder's checkpoints and index cards), then paths.
    Every part of the product (CLI predict/finetune/evaluate/train, widgets, Python API) resolves
    models here. Raises ``RegistryError`` listing the registered names when nothing matches, and
    when the match is unusable (its file is missing or is not a checkpoint).
    """
    text = os.fspath(name_or_path).strip()
    if not text:
        raise RegistryError("No model given: pass a registered model name or a checkpoint file.")
    entries = list_models(directory, read=False)
    for entry in entries:
        if entry.name.lower() == text.lower():
            if entry.kind == "checkpoint":
                entry = _entry_from_checkpoint(entry.path)  # now read: is it usable?
            if not entry.available:
                raise RegistryError(
                    f"Model {entry.name!r} is registered but unusable: {entry.problem}. Pick another model, "
                    f"or remove it from {models_dir()}."
                )
            return entry
    path = Path(text).expanduser()
    if path.is_file():
        entry = _entry_from_checkpoint(path)
        if not entry.available:
            raise RegistryError(
                f"{path.name} cannot be used as a model ({entry.problem}). Pick another model, or check "
                "that the file is complete (copy or export it again)."
            )
        return entry
    if path.is_dir():
        raise RegistryError(
            f"{path} is a folder, not a model: pass a checkpoint file, or register the authors' release "
            "folder once with `madgnet models import-official DIR`."
        )
    known = ", ".join(e.name for e in entries) or "none yet"
    raise RegistryError(
        f"Unknown model {text!r}: neither a registered name (registered: {known}) nor a checkpoint file. "
        "Import the released models with `madgnet models import-official DIR`, "
        "or pass the path of a checkpoint."
    )


def load_registered_model(
    name_or_path: str | os.PathLike[str], device: Any = None, directory: Any = None
) -> Any:
    """Build the model a name or path stands for, with ``checkpoint_info`` completed from the registry.

    The returned module also carries ``model_name`` and ``checkpoint_path`` for provenance. Nothing
    is cached here: callers that reuse a model keep it (the CLI for its run, a widget per widget).
    """
    from napari_madgnet.model import load_model

    entry = resolve_model(name_or_path, directory)
    model = load_model(entry.path, backbone=entry.encoder if entry.kind == "link" else None, device=device)
    info = dict(getattr(model, "checkpoint_info", {}) or {})
    info["preprocessing"] = {**(info.get("preprocessing") or {}), **entry.preprocessing}
    prov = dict(info.get("provenance") or {})
    for field_name in ("trained_on", "modality"):
        if getattr(entry, field_name) and field_name not in prov:
            prov[field_name] = getattr(entry, field_name)
    info["provenance"] = prov
    model.checkpoint_info = info
    model.model_name = entry.name
    model.checkpoint_path = str(entry.path)
    return model


def check_name(name: str) -> str:
    """The registry's rule for model names: letters, digits, '.', '_', '-', starting with a letter
    or digit, at most 128 characters. Returns the name; raises ``RegistryError`` otherwise."""
    if not _NAME.match(name or ""):
        raise RegistryError(
            f"Model name {name!r} is not allowed; use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)."
        )
    return name


def name_from(text: str, fallback: str = "model") -> str:
    """A valid model name made from free text (a layer or file name): other characters become '-'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:100]
    return stem or fallback


def unique_name(base: str, directory: str | os.PathLike[str] | None = None) -> str:
    """``base`` if no model (and no file ``base.pt``) of that name exists, else ``base-2``, ``base-3``..."""
    root = Path(directory) if directory else models_dir()
    taken = {e.name.lower() for e in list_models(root, read=False)}
    name, i = base, 2
    while name.lower() in taken or (root / f"{name}.pt").exists():
        name, i = f"{base}-{i}", i + 1
    return check_name(name)


def _free(root: Path, name: str, overwrite: bool) -> None:
    taken = [p for p in root.glob(f"{name}.*") if p.suffix == ".json" or _checkpoint_suffix(p)]
    taken = [p for p in taken if _stem(p) == name]
    if taken and not overwrite:
        raise FileExistsError(
            f"A model named {name!r} is already registered ({taken[0]}); choose another name or overwrite."
        )
    for p in taken:
        p.unlink()


def register_model(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    copy: bool = False,
    trained_on: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    source: str | None = None,
    preprocessing: dict[str, Any] | None = None,
    overwrite: bool = False,
    directory: str | os.PathLike[str] | None = None,
) -> ModelEntry:
    """Add a checkpoint to the registry under ``name`` (default: its file name).

    ``copy=False`` writes an index card pointing to the file where it is; ``copy=True`` copies the
    file into the folder. The source file is never modified. Not a checkpoint: RegistryError.
    """
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise RegistryError(f"{src}: no such checkpoint file.")
    root = Path(directory) if directory else models_dir()
    root.mkdir(parents=True, exist_ok=True)
    name = check_name(name or _stem(src))
    try:
        meta = checkpoint_metadata(src)
    except Exception as exc:
        raise RegistryError(f"{src} is not a MADGNet checkpoint ({exc}); nothing was registered.") from exc
    _free(root, name, overwrite)
    config = meta.get("config") or {}
    if copy:
        target = root / f"{name}{_checkpoint_suffix(src) or '.pth'}"
        with atomic_path(target, overwrite=True) as tmp:
            shutil.copyfile(src, tmp)
        if any(v is not None for v in (trained_on, modality, description, source, preprocessing)):
            _write_card(root, name, target, config, trained_on, modality, description, source, preprocessing)
        return resolve_model(name, root)
    _write_card(
        root,
        name,
        src,
        config,
        trained_on,
        modality,
        description,
        source,
        preprocessing or meta.get("preprocessing"),
    )
    return resolve_model(name, root)


def _write_card(root, name, target, config, trained_on, modality, description, source, preprocessing) -> Path:
    card = {
        "name": name,
        "path": str(target),
        "source": source or "linked checkpoint",
        "encoder": config.get("backbone"),
        "num_classes": config.get("num_classes"),
        "trained_on": trained_on,
        "modality": modality,
        "description": description,
        "preprocessing": dict(preprocessing or {}),
    }
    out = root / f"{name}.json"
    with atomic_path(out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return out


def find_official_checkpoints(release_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The released checkpoint of each data set under a release folder (highest epoch wins).

    Accepts the release root (``DIR/model_weights/<Dataset>/model_weights/*.pth.tar``) or its
    ``model_weights`` folder.
    """
    root = Path(release_dir).expanduser()
    if not root.is_dir():
        raise RegistryError(f"{root}: no such folder; pass the folder the MADGNet release was unpacked to.")
    base = root / "model_weights" if (root / "model_weights").is_dir() else root
    found: dict[str, Path] = {}
    for dataset in OFFICIAL_MODELS:
        folder = base / dataset / "model_weights"
        files = sorted(folder.glob("*.pth.tar")) if folder.is_dir() else []
        if files:
            found[dataset] = max(files, key=lambda p: (_epoch(p), p.name))
    if not found:
        raise RegistryError(
            f"No released checkpoints under {root}: expected "
            "model_weights/<PolypSegData|DSB2018|ISIC2018|COVID19|BUSI>/model_weights/"
            "model_weight(EPOCH 200).pth.tar."
        )
    return found


def _epoch(path: Path) -> int:
    match = re.search(r"EPOCH\s*(\d+)", path.name, re.IGNORECASE)
    return int(match.group(1)) if match else -1


def import_official(
    release_dir: str | os.PathLike[str],
    *,
    convert: bool = False,
    overwrite: bool = False,
    directory: str | os.PathLike[str] | None = None,
) -> list[ModelEntry]:
    """Register the authors' released checkpoints under readable names.

    Default: index cards pointing to the release files (instant, no copies). ``convert=True``
    writes project-format copies instead (drops the ~120 MB of fixed DCT buffers, adds
    preprocessing and provenance), so the release folder can be deleted afterwards.
    """
    from napari_madgnet.hashing import file_sha256

    root = Path(directory) if directory else models_dir()
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for dataset, src in find_official_checkpoints(release_dir).items():
        name, trained_on, modality = OFFICIAL_MODELS[dataset]
        description = f"MADGNet (CVPR 2024) released weights, {dataset}, epoch {_epoch(src)}"
        if not convert:
            entries.append(
                register_model(
                    src,
                    name,
                    trained_on=trained_on,
                    modality=modality,
                    description=description,
                    source="official MADGNet release",
                    preprocessing=RELEASE_PREPROCESSING,
                    overwrite=overwrite,
                    directory=root,
                )
            )
            continue
        from napari_madgnet.model import load_model, save_model

        _free(root, name, overwrite)
        model = load_model(src)
        provenance = {
            "source": "official MADGNet release (converted)",
            "trained_on": trained_on,
            "modality": modality,
            "description": description,
            "original_file": str(src),
            "original_sha256": file_sha256(src),
            "epoch": _epoch(src),
        }
        save_model(
            model, root / f"{name}.pth", {"preprocessing": RELEASE_PREPROCESSING, "provenance": provenance}
        )
        entries.append(resolve_model(name, root))
    return entries
