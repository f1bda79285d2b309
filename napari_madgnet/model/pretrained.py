"""ImageNet encoder weights: download once into a user cache, verify, map onto the encoder.

Files (the released names; the part after the last ``-`` is a prefix of the file's SHA-256):

- ``resnest50-528c19ca.pth`` from the ResNeSt releases on GitHub,
- ``res2net50_v1b_26w_4s-3cf99910.pth`` from the Res2Net authors' mirror,
- ``resnet50-0676ba61.pth`` from download.pytorch.org (torchvision).

Cache folder: ``$MADGNET_CACHE_DIR/weights`` if set, else ``$XDG_CACHE_HOME/napari-madgnet/weights``
(default ``~/.cache/napari-madgnet/weights``). ``MADGNET_WEIGHTS_URL`` replaces the download base
URL for every file (a mirror, or a local server in tests). Without network access, put the file
there by hand: the error message says which file and which folder.

Downloads go through pooch (HTTPS with TLS verification; a plain-HTTP mirror is refused unless
``MADGNET_ALLOW_INSECURE_MIRROR=1`` is set, as the tests' server on 127.0.0.1 does). The authors
publish only a sha256 prefix (in the file name), so the full digest of the first download that
matches the prefix is recorded in the cache (``sha256-record.json``) and every later copy must
match it in full; a full digest pinned in ``PINNED_SHA256`` is checked from the start.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from napari_madgnet.errors import UserError
from napari_madgnet.hashing import sha256_file
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


#: Full sha256 digests, where the publisher gives one (none of the three encoders' sources does).
PINNED_SHA256: dict[str, str] = {}
_RECORD = "sha256-record.json"
INSECURE_MIRROR_ENV = "MADGNET_ALLOW_INSECURE_MIRROR"


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


def _records(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / _RECORD).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(folder: Path, filename: str, digest: str) -> None:
    """Remember the full digest of a file that matched its published prefix (trust on first use)."""
    from napari_madgnet.io import atomic_path

    records = _records(folder)
    if records.get(filename) == digest:
        return
    records[filename] = digest
    try:
        with atomic_path(folder / _RECORD, overwrite=True) as tmp:
            tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache: the prefix is still checked every time


def expected_digest(filename: str, folder: Path) -> str | None:
    """The full sha256 a copy of ``filename`` must have: pinned, or recorded on first download."""
    return PINNED_SHA256.get(filename) or _records(folder).get(filename)


def check_digest(digest: str, filename: str, folder: Path) -> str | None:
    """None if ``digest`` is right for ``filename``, else what is wrong (for an error message)."""
    full = expected_digest(filename, folder)
    if full is not None:
        return None if digest == full else f"SHA-256 {digest[:12]}... instead of the known {full[:12]}..."
    prefix = expected_hash_prefix(filename)
    return None if digest.startswith(prefix) else f"SHA-256 {digest[:12]}... does not start with {prefix}"


def check_url(url: str) -> None:
    """HTTPS only, unless the user opted in to an insecure mirror (``MADGNET_ALLOW_INSECURE_MIRROR=1``)."""
    if url.startswith("https://"):
        return
    if url.startswith("http://") and os.environ.get(INSECURE_MIRROR_ENV) == "1":
        return
    raise PretrainedWeightsError(
        f"Refusing to download from {url}: only https:// addresses are used (set "
        f"{INSECURE_MIRROR_ENV}=1 to allow a plain-http mirror you trust, e.g. on your own network)."
    )


def fetch_file(filename: str, base_url: str, folder: Path | None = None, timeout: float = 60.0) -> Path:
    """Return ``folder/filename``, downloading ``base_url + filename`` first if it is missing.

    The download (pooch, TLS verified) lands in a temporary folder beside the target; only when its
    sha256 passes ``check_digest`` is it renamed into place (else it is deleted and
    ``PretrainedWeightsError`` raised). A cached file is verified the same way on every call.
    """
    folder = weights_dir() if folder is None else Path(folder)
    target = folder / filename
    if target.is_file():
        digest = sha256_file(target)
        problem = check_digest(digest, filename, folder)
        if problem:
            raise PretrainedWeightsError(
                f"{target} is corrupt or not the released file ({problem}). Delete it to download it again."
            )
        _record(folder, filename, digest)
        return target

    url = base_url.rstrip("/") + "/" + filename
    check_url(url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PretrainedWeightsError(f"cannot create the weights folder {folder}: {exc}") from exc
    import pooch

    pooch.get_logger().setLevel("WARNING")  # pooch prints every download's hash at INFO level
    with tempfile.TemporaryDirectory(prefix=f".{filename}.", dir=folder) as tmp_dir:
        try:
            path = Path(
                pooch.retrieve(
                    url,
                    known_hash=None,  # checked below: prefix or recorded/pinned full digest
                    fname=filename,
                    path=tmp_dir,
                    downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False),
                )
            )
        except Exception as exc:  # requests' and pooch's errors: connection, HTTP status, timeout
            raise PretrainedWeightsError(
                f"Could not download the encoder weights {filename} (no internet connection?). "
                f"Train from random weights instead (--init scratch), or copy the file {filename} "
                f"into {folder} and try again."
            ) from exc
        digest = sha256_file(path)
        problem = check_digest(digest, filename, folder)
        if problem:
            raise PretrainedWeightsError(
                f"Downloaded {filename} from {url} but its {problem}; the file was discarded."
            )
        os.chmod(path, 0o644)
        os.replace(path, target)
    _record(folder, filename, digest)
    return target


def fetch_imagenet_weights(backbone: str) -> Path:
    """Path of the cached ImageNet weights of ``backbone`` (a canonical encoder name), downloaded
    and verified if needed."""
    if backbone not in IMAGENET_WEIGHTS:
        raise PretrainedWeightsError(
            f"No ImageNet weights are known for {backbone!r}; known: {', '.join(IMAGENET_WEIGHTS)}."
        )
    spec = IMAGENET_WEIGHTS[backbone]
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
