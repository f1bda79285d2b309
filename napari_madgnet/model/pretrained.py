"""ImageNet encoder weights: download once into a user cache, verify, map onto the encoder.

Files (the released names; the part after the last ``-`` is a prefix of the file's SHA-256):

- ``resnest50-528c19ca.pth`` from the ResNeSt releases on GitHub,
- ``res2net50_v1b_26w_4s-3cf99910.pth`` from the Res2Net authors' mirror,
- ``resnet50-0676ba61.pth`` from download.pytorch.org (torchvision).

Cache folder: ``$MADGNET_CACHE_DIR/weights`` if set, else ``$XDG_CACHE_HOME/napari-madgnet/weights``
(default ``~/.cache/napari-madgnet/weights``). ``MADGNET_WEIGHTS_URL`` replaces the download base
URL for every file (a mirror, or a local server in tests). Without network access, put the file
there by hand: the error message says which file and which folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from napari_madgnet.errors import UserError
from napari_madgnet.paths import cache_dir

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9.]+$")


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file: its released name and the folder URL it is published under."""

    filename: str
    base_url: str


IMAGENET_WEIGHTS: dict[str, WeightFile] = {
    "resnest50": WeightFile(
        "resnest50-528c19ca.pth",
        "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/",
    ),
    "res2net50_v1b_26w_4s": WeightFile(
        "res2net50_v1b_26w_4s-3cf99910.pth",
        "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/",
    ),
    "resnet50": WeightFile("resnet50-0676ba61.pth", "https://download.pytorch.org/models/"),
}


class PretrainedWeightsError(UserError, OSError):
    """ImageNet weights could not be obtained (offline, bad hash, unusable file)."""


def weights_dir() -> Path:
    """Folder of downloaded encoder weights: ``weights/`` in :func:`napari_madgnet.paths.cache_dir`."""
    return cache_dir() / "weights"


def expected_hash_prefix(filename: str) -> str:
    """The SHA-256 prefix a released file name carries (``name-<hex>.pth``)."""
    match = _HASH_IN_NAME.search(filename)
    if match is None:
        raise ValueError(f"{filename!r} carries no hash prefix (expected name-<hex>.ext)")
    return match.group(1)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(filename: str, base_url: str, folder: Path | None = None, timeout: float = 60.0) -> Path:
    """Return ``folder/filename``, downloading ``base_url + filename`` first if it is missing.

    The download goes to a temporary file in ``folder``; its SHA-256 must start with the prefix
    in the name, else the temporary file is deleted and PretrainedWeightsError raised; only then
    is it renamed into place. A cached file is verified the same way on every call. TLS is
    verified by Python's default context (never disabled).
    """
    folder = weights_dir() if folder is None else Path(folder)
    target = folder / filename
    prefix = expected_hash_prefix(filename)
    if target.is_file():
        digest = sha256_of(target)
        if not digest.startswith(prefix):
            raise PretrainedWeightsError(
                f"{target} is corrupt or not the released file (SHA-256 {digest[:12]}..., expected "
                f"{prefix}...). Delete it to download it again."
            )
        return target

    url = base_url.rstrip("/") + "/" + filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PretrainedWeightsError(f"cannot create the weights folder {folder}: {exc}") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while block := resp.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise PretrainedWeightsError(
                f"could not download {filename} from {url} ({reason}). Without internet access, "
                f"get the file {filename} elsewhere and place it in the folder {folder} "
                f"(i.e. as {target}); set MADGNET_CACHE_DIR to use another cache folder."
            ) from exc
        hexdigest = digest.hexdigest()
        if not hexdigest.startswith(prefix):
            raise PretrainedWeightsError(
                f"downloaded {filename} from {url} but its SHA-256 {hexdigest[:12]}... does not "
                f"start with {prefix}; the file was discarded."
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch_imagenet_weights(backbone: str) -> Path:
    """Path of the cached ImageNet weights of ``backbone`` (downloaded and verified if needed)."""
    from .encoders import canonical_backbone

    spec = IMAGENET_WEIGHTS[canonical_backbone(backbone)]
    base = os.environ.get("MADGNET_WEIGHTS_URL") or spec.base_url
    return fetch_file(spec.filename, base)


def imagenet_state_for_encoder(
    state: Mapping[str, torch.Tensor], encoder: nn.Module
) -> dict[str, torch.Tensor]:
    """Map an ImageNet classifier state dict onto an encoder: drop ``fc.*`` and wrappers.

    Old files lack BatchNorm's ``num_batches_tracked``; it is filled with zeros.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key.startswith("fc."):
            continue
        mapped[key] = value
    for key, value in encoder.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = torch.zeros_like(value)
    return mapped


def load_imagenet_weights(encoder: nn.Module, backbone: str) -> None:
    """Download (once) and load the ImageNet weights of ``backbone`` into ``encoder``."""
    path = fetch_imagenet_weights(backbone)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # corrupt despite the hash, or unsafe content
        raise PretrainedWeightsError(f"cannot read ImageNet weights {path}: {exc}") from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    mapped = imagenet_state_for_encoder(state, encoder)
    result = encoder.load_state_dict(mapped, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedWeightsError(
            f"{path.name} does not fit the {backbone} encoder: missing {result.missing_keys[:5]} "
            f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:5]} "
            f"({len(result.unexpected_keys)})"
        )


__all__ = [
    "IMAGENET_WEIGHTS",
    "PretrainedWeightsError",
    "fetch_file",
    "fetch_imagenet_weights",
    "load_imagenet_weights",
    "weights_dir",
]
