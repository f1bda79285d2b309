"""Loading and saving MADGNet weights: released checkpoints, bare state dicts, project files.

Everything is read with ``torch.load(weights_only=True, map_location="cpu")``: a file whose
pickle would run code is refused (:class:`UnsafeCheckpointError`), never executed. NumPy scalars
and dtypes, which many training scripts store beside the weights (a best metric as
``np.float64``), are allow-listed (``torch.serialization.safe_globals``): they are data, not code.
Weights that are NaN or infinite (a diverged run) are refused on load (:class:`DivergedWeightsError`).

The project's own format (written by :func:`save_model`) is a dict::

    {"format": "napari-madgnet", "format_version": 1,
     "config": ModelConfig.to_dict(),
     "state_dict": {...},          # learnable weights and BN statistics, no DCT filters
     "preprocessing": {...},       # e.g. {"normalization": "scale255", "input_size": 352, ...}
     "provenance": {...}}          # data set, date, training settings, metrics, versions
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_madgnet.errors import UserError
from napari_madgnet.io import atomic_path

from .config import ModelConfig
from .network import MADGNet

FORMAT_NAME = "napari-madgnet"
FORMAT_VERSION = 1
# What the released models expect: RGB resized to 352 x 352, scaled to [0, 1], no mean/std.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "normalization": "scale255",
    "input_size": 352,
    "channels": 3,
}

_DCT_KEY = re.compile(r"\.multi_frequency_branches\.(\d+)\.0\.dct_weight_(\d+)$")
_BRANCH_WIDTH_KEY = re.compile(r"decoder_stage\d\.attention_layer\.multi_scale_branches\.\d+\.3\.weight")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile

PathOrStateDict = str | os.PathLike[str] | Mapping[str, Any]


class CheckpointError(UserError):
    """A file or object that cannot be loaded as MADGNet weights."""


class NotACheckpointError(CheckpointError):
    """The file is not a PyTorch checkpoint, or holds no state dict."""


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle would need to run code (or unknown classes) to load; it was refused."""


class DivergedWeightsError(CheckpointError):
    """Some weights are NaN or infinite: the training run that saved them diverged."""


class CheckpointMismatchError(CheckpointError):
    """The weights do not fit the network: missing, unexpected or differently shaped keys.

    Attributes ``missing``, ``unexpected`` (key lists) and ``shape_mismatches`` (key -> (in the
    checkpoint, in the model)) hold the full details.
    """

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        shape_mismatches: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.shape_mismatches = dict(shape_mismatches or {})
        parts = [message]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} key(s): {_first(keys)}")
        if self.shape_mismatches:
            shown = [f"{k} {a} vs model {b}" for k, (a, b) in self.shape_mismatches.items()]
            parts.append(f"{len(shown)} key(s) with other shapes: {_first(shown)}")
        super().__init__("; ".join(parts))


def _first(items: list[str], n: int = 5) -> str:
    more = f", ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# ----------------------------------------------------------------------------- reading


def _numpy_safe_globals() -> list[Any]:
    """NumPy's scalar constructor and dtype classes: what a pickled ``np.float64(0.9)`` or
    ``np.dtype("float32")`` needs, and nothing that can run code. Arrays are not included."""
    try:
        from numpy._core.multiarray import scalar  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    kinds = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
    kinds += (np.float16, np.float32, np.float64, np.complex64, np.complex128)
    # NumPy >= 1.25 pickles a dtype through its class (numpy.dtypes.Float64DType, ...).
    return [scalar, np.dtype, *{type(np.dtype(k)) for k in kinds}]


def _resave_hint(path: Path) -> str:
    return (
        " If you trust the file, load it once where it was made and keep only the weights: "
        f"ckpt = torch.load({str(path)!r}, weights_only=False); "
        "torch.save(ckpt['state_dict'], 'weights.pth') (or ckpt['model_state_dict'], or "
        "model.state_dict()), then use weights.pth."
    )


def _torch_load(path: Path, mmap: bool = False) -> Any:
    """``torch.load`` with weights_only, turning its failures into clear checkpoint errors."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    # A checkpoint is a zip archive (torch >= 1.6) or a legacy pickle (protocol byte 0x80).
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise NotACheckpointError(f"{path} is not a PyTorch checkpoint (.pth/.pt/.pth.tar)")
    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with safe(_numpy_safe_globals()) if safe else contextlib.nullcontext():
            return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap or None)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        hint = f" It references {found.group(1)}." if found else ""
        raise UnsafeCheckpointError(
            f"{path} is not a safe checkpoint: loading it would need Python objects beyond "
            f"tensors, plain containers and NumPy scalars (possibly code), so it was refused.{hint}"
            + _resave_hint(path)
        ) from exc
    except RuntimeError as exc:
        if mmap and "mmap can only be used" in str(exc):
            return _torch_load(path, mmap=False)
        raise NotACheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    except (EOFError, KeyError, ValueError) as exc:
        raise NotACheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc!r}") from exc


def check_finite(state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Raise :class:`DivergedWeightsError` naming the tensors that hold NaN or infinite values."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DivergedWeightsError(
            f"{origin} holds NaN or infinite weights in {len(bad)} tensor(s) ({_first(bad, 3)}): "
            "diverged training? Use a checkpoint saved before the loss became NaN (e.g. the run's "
            "best.pt), or train again with a lower learning rate."
        )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def _unpack(obj: Any, origin: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a loaded object into (state dict, metadata); metadata has config-or-None etc."""
    if not isinstance(obj, Mapping):
        raise NotACheckpointError(f"{origin} holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == FORMAT_NAME:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{origin} has checkpoint format version {version!r}; this napari-madgnet reads "
                f"up to {FORMAT_VERSION}. Update napari-madgnet."
            )
        state = obj.get("state_dict")
        if not _is_state_dict(state):
            raise NotACheckpointError(f"{origin}: napari-madgnet checkpoint without a state_dict")
        meta = {
            "format": FORMAT_NAME,
            "format_version": version,
            "config": dict(obj.get("config") or {}) or None,
            "preprocessing": dict(obj.get("preprocessing") or DEFAULT_PREPROCESSING),
            "provenance": dict(obj.get("provenance") or {}),
        }
        return _strip_prefixes(state), meta
    provenance: dict[str, Any] = {}
    if "model_state_dict" in obj and _is_state_dict(obj["model_state_dict"]):
        state = obj["model_state_dict"]
        provenance["source"] = "released MADGNet checkpoint (model_state_dict)"
        if isinstance(obj.get("current_epoch"), int | float):
            provenance["current_epoch"] = obj["current_epoch"]
    elif "state_dict" in obj and _is_state_dict(obj["state_dict"]):
        state = obj["state_dict"]
        provenance["source"] = "state dict (under 'state_dict')"
    elif _is_state_dict(obj):
        state = obj
        provenance["source"] = "bare state dict"
    else:
        raise NotACheckpointError(
            f"{origin} holds no state dict (expected a dict of tensors, or one under "
            f"'model_state_dict' or 'state_dict'); top-level keys: {_first([str(k) for k in obj])}"
        )
    meta = {
        "format": "state_dict",
        "format_version": None,
        "config": None,
        "preprocessing": dict(DEFAULT_PREPROCESSING),
        "provenance": provenance,
    }
    return _strip_prefixes(state), meta


def _encoder_from_keys(state: Mapping[str, torch.Tensor]) -> str | None:
    if "feature_encoding.layer1.0.conv2.fc1.weight" in state:
        return "resnest50"
    if "feature_encoding.layer1.0.convs.0.weight" in state:
        return "res2net50_v1b_26w_4s"
    if "feature_encoding.conv1.weight" in state:
        return "resnet50"
    return None


def infer_config(state: Mapping[str, torch.Tensor], backbone: str | None = None) -> ModelConfig:
    """Architecture implied by a state dict's keys and shapes (release defaults otherwise).

    The encoder comes from characteristic keys, ``num_classes`` from the sub-decoder output
    convs, ``scale_branches`` from the alpha gates, ``min_channel`` from the branch widths and
    ``frequency_branches`` from the DCT buffers when present. ``min_resolution`` and
    ``frequency_selection`` leave no trace in the weights: the release's 8 and "top" are used.
    """
    defaults = ModelConfig()
    found = _encoder_from_keys(state)
    kwargs: dict[str, Any] = {"backbone": backbone or found or defaults.backbone}
    head = state.get("sub_decoder_stage4.output_map_conv.weight")
    if head is not None and head.dim() == 4:
        kwargs["num_classes"] = int(head.shape[0])
    gates = [k for k in state if k.startswith("decoder_stage1.attention_layer.alpha_list.")]
    if gates:
        kwargs["scale_branches"] = len(gates)
    widths = [int(v.shape[0]) for k, v in state.items() if _BRANCH_WIDTH_KEY.fullmatch(k)]
    if widths:
        kwargs["min_channel"] = min(widths)
    dct = [k for k in state if k.startswith("decoder_stage1.") and _DCT_KEY.search(k)]
    has_mfca = any(".multi_frequency_branches." in k for k in state)
    if dct:
        first_branch = {int(_DCT_KEY.search(k).group(2)) for k in dct}  # type: ignore[union-attr]
        kwargs["frequency_branches"] = len(first_branch)
    elif gates and not has_mfca:
        kwargs["frequency_branches"] = 0
    return ModelConfig(**kwargs)


def _check_and_strip_dct(model: MADGNet, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop released DCT buffers after checking they equal the rebuilt filters."""
    rebuilt = {n: b for n, b in model.named_buffers() if n.endswith(".filters")}
    kept: dict[str, torch.Tensor] = {}
    wrong: list[str] = []
    for key, value in state.items():
        match = _DCT_KEY.search(key)
        if match is None:
            kept[key] = value
            continue
        module = key[: match.start()] + f".multi_frequency_branches.{match.group(1)}.0.filters"
        filters = rebuilt.get(module)
        k = int(match.group(2))
        if filters is None or k >= filters.shape[0]:
            kept[key] = value  # reported as unexpected by the key check
            continue
        sample = value[0] if value.dim() == 3 else value
        if sample.shape != filters[k].shape or not torch.allclose(sample.float(), filters[k], atol=1e-6):
            wrong.append(key)
    if wrong:
        raise CheckpointMismatchError(
            "the checkpoint's fixed DCT filters differ from this architecture's (another "
            f"frequency selection or pooled size?): {_first(wrong)}"
        )
    return kept


def _match_state(model: MADGNet, state: Mapping[str, torch.Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = {
        k: (tuple(state[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    }
    if missing or unexpected or shapes:
        c = model.config
        raise CheckpointMismatchError(
            f"{origin} does not fit MADGNet(backbone={c.backbone!r}, num_classes={c.num_classes}, "
            f"scale_branches={c.scale_branches}, min_channel={c.min_channel})",
            missing,
            unexpected,
            shapes,
        )


def _load_source(source: PathOrStateDict) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, "the given state dict"
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return _torch_load(path), str(path)


def load_model(
    source: PathOrStateDict,
    backbone: str | None = None,
    device: str | torch.device | None = None,
) -> MADGNet:
    """Build a MADGNet and load weights from a file path or an in-memory checkpoint.

    Accepts the released ``.pth.tar`` files (``{"model_state_dict", "current_epoch"}``), bare
    state dicts, ``{"state_dict": ...}`` dicts, keys prefixed ``module.`` (DataParallel/DDP) or
    ``_orig_mod.`` (torch.compile), and the project's own checkpoints (:func:`save_model`). The
    architecture comes from the stored config or is inferred from the keys (:func:`infer_config`);
    ``backbone`` (if given) must agree with the weights. Every learnable weight and BN statistic
    must match exactly, else :class:`CheckpointMismatchError` names the keys; the released DCT
    filter buffers are checked against the rebuilt ones and dropped. Unsafe pickles raise
    :class:`UnsafeCheckpointError`, other files :class:`NotACheckpointError`, NaN or infinite
    weights :class:`DivergedWeightsError`.

    The model is returned in eval mode on ``device`` (default CPU), with
    ``model.checkpoint_info`` = {format, format_version, config, preprocessing, provenance,
    source}.
    """
    obj, origin = _load_source(source)
    state, meta = _unpack(obj, origin)
    check_finite(state, origin)
    if meta["config"] is not None:
        config = ModelConfig.from_dict(meta["config"])
        if backbone is not None and ModelConfig(backbone=backbone).backbone != config.backbone:
            raise CheckpointMismatchError(f"{origin} holds a {config.backbone} model, not {backbone}")
    else:
        found = _encoder_from_keys(state)
        if backbone is not None and found is not None:
            wanted = ModelConfig(backbone=backbone).backbone
            if wanted != found:
                raise CheckpointMismatchError(f"{origin} holds a {found} encoder, not {wanted}")
        config = infer_config(state, backbone)
    model = MADGNet(config=config)
    state = _check_and_strip_dct(model, dict(state))
    _match_state(model, state, origin)
    model.load_state_dict(state, strict=True)
    meta["config"] = config.to_dict()
    meta["source"] = origin
    model.checkpoint_info = meta
    model.eval()
    if device is not None:
        model.to(device)
    return model


def read_checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Config, preprocessing and provenance of a checkpoint file, without building the model.

    Works for project checkpoints (stored metadata) and released/bare ones (config inferred
    from the keys, the release's preprocessing). Keys: format, format_version, config,
    preprocessing, provenance, source. The file is memory-mapped where possible, so this is cheap
    (one pass over the weights checks that they are finite: :class:`DivergedWeightsError`).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    state, meta = _unpack(_torch_load(p, mmap=True), str(p))
    check_finite(state, str(p))
    if meta["config"] is None:
        if _encoder_from_keys(state) is None:
            raise CheckpointMismatchError(f"{p} holds no MADGNet encoder (feature_encoding.*)")
        meta["config"] = infer_config(state).to_dict()
    else:
        meta["config"] = ModelConfig.from_dict(meta["config"]).to_dict()
    meta["source"] = str(p)
    return meta


# ----------------------------------------------------------------------------- writing


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` made of types ``torch.load(weights_only=True)`` accepts.

    numpy scalars become python numbers, paths and dates become strings; anything else that is
    not a str/int/float/bool/None, list, tuple, dict or tensor raises TypeError.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, bool | int | float | str):  # subclasses (IntEnum, str enums...)
        return _base_plain(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: dict key {k!r} must be a str or int")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(
        f"{where}: {type(value).__name__} is not allowed in a checkpoint; use str, int, float, "
        "bool, None, lists, dicts or tensors"
    )


def _base_plain(value: bool | int | float | str) -> bool | int | float | str:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    raise AssertionError  # pragma: no cover


def _unwrap(model: torch.nn.Module) -> MADGNet:
    while not isinstance(model, MADGNet):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"save_model expects a MADGNet, got {type(model).__name__}")
        model = inner
    return model


def _package_version() -> str:
    try:
        from .. import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def checkpoint_dict(model: torch.nn.Module, metadata: Mapping[str, Any] | None = None) -> dict:
    """The project checkpoint dict :func:`save_model` writes (weights copied to CPU)."""
    net = _unwrap(model)
    if getattr(net, "bn_folded", False):
        raise ValueError(
            "this model has BatchNorm folded into its convolutions (fold_batchnorm) and no longer "
            "has the official weight layout; save the original model instead"
        )
    metadata = dict(metadata or {})
    preprocessing = dict(DEFAULT_PREPROCESSING)
    preprocessing.update(metadata.pop("preprocessing", None) or {})
    provenance = dict(metadata.pop("provenance", None) or {})
    provenance.update(metadata)  # any other top-level metadata is provenance too
    provenance.setdefault("package_version", _package_version())
    provenance.setdefault("torch_version", torch.__version__)
    now = _dt.datetime.now(_dt.timezone.utc)
    provenance.setdefault("saved_at", now.isoformat(timespec="seconds"))
    state = {
        k: v.detach().to("cpu", copy=True).contiguous()
        for k, v in net.state_dict().items()
        if not _DCT_KEY.search(k)
    }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": net.config.to_dict(),
        "state_dict": state,
        "preprocessing": _plain(preprocessing, "preprocessing"),
        "provenance": _plain(provenance, "provenance"),
    }


def save_model(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in the project format (see module docstring), atomically.

    ``metadata`` may hold ``"preprocessing"`` (merged over :data:`DEFAULT_PREPROCESSING`) and
    ``"provenance"`` (data set, date, training settings, metrics...); any other top-level keys
    are added to provenance. Package/torch versions and the UTC time are added if absent. Values
    must be plain python types or tensors (numpy scalars, paths and dates are converted;
    anything else raises TypeError) so the file loads with ``weights_only=True``. The file is
    written to a temporary file in the same folder, fsynced and renamed over ``path``, so
    readers never see half a checkpoint. Returns the path.
    """
    ckpt = checkpoint_dict(model, metadata)
    target = Path(path).expanduser()
    atomic_torch_save(ckpt, target)
    return target


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`~napari_madgnet.io.atomic_path`, into a Python file object.

    Given a file name, torch's C++ writer holds the GIL while it writes the archive (about 90 ms
    for a 400 MB training state here), which freezes napari's window when a Fine-tune job saves;
    through a file object every chunk goes through ``write``, which lets go of the GIL.
    """
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
