"""Can a run start from the ImageNet encoder here and now? Cached, downloadable, or neither.

The fine-tuning preset starts from the ImageNet encoder. Offline, without the file in the cache,
that start is impossible, and saying so before training (beside the choice in the Fine-tune dock,
in one line from ``madgnet finetune``) costs nothing; failing after the data were prepared and a
run folder made costs the user's trust. ``encoder_weights_status`` answers without downloading
(a cache look-up, then at most one HEAD request with a short timeout); ``choose_init`` turns the
answer into the start a run uses when the user did not insist on one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from napari_madgnet.model.pretrained import (
    IMAGENET_WEIGHTS,
    PretrainedWeightsError,
    check_url,
    weights_dir,
)


@dataclass(frozen=True)
class EncoderWeights:
    """Where the ImageNet weights of one encoder stand on this computer.

    ``cached``: the file is in the weights folder (its hash is checked when it is used).
    ``downloadable``: its address answered a HEAD request (None: not asked).
    ``reason``: why a download is impossible, in plain words ("" when it is possible or not asked).
    """

    backbone: str
    filename: str
    folder: Path
    url: str
    cached: bool
    downloadable: bool | None = None
    reason: str = ""

    @property
    def usable(self) -> bool:
        """True when a run can start from these weights (cached, or a download is possible)."""
        return self.cached or bool(self.downloadable)

    def note(self) -> str:
        """One or two short sentences for the dock or the terminal."""
        if self.cached:
            return "The ImageNet starting weights are on this computer."
        if self.downloadable:
            return (
                "The ImageNet starting weights (about 100 MB) will be downloaded once when training starts."
            )
        return (
            "The ImageNet starting weights are not on this computer and cannot be downloaded now "
            f"({self.reason or 'no internet connection?'}). Start from random weights, or copy "
            f"{self.filename} into {self.folder}."
        )


def _head(url: str, timeout: float) -> str:
    """"" when ``url`` answers a HEAD request with a success status, else why not (short).

    The standard library's client (TLS verified, proxies from the environment), so asking costs
    no dependency; redirects (GitHub's release files) are followed.
    """
    import urllib.error
    import urllib.request

    try:
        check_url(url)
    except PretrainedWeightsError:
        return "the download address is not https"
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "napari-madgnet"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return ""
    except urllib.error.HTTPError as exc:
        return f"the download server answered {exc.code}"
    except TimeoutError:
        return "no answer from the download server"
    except (urllib.error.URLError, OSError):
        return "no internet connection?"


def encoder_weights_status(
    backbone: str, *, check_download: bool = True, timeout: float = 3.0
) -> EncoderWeights:
    """Whether the ImageNet weights of ``backbone`` are cached and, if not, whether they can be
    downloaded (one HEAD request of at most ``timeout`` seconds; ``MADGNET_WEIGHTS_URL`` is
    honoured as by the download itself). Never downloads. Raises ``PretrainedWeightsError`` for an
    encoder without ImageNet weights. Call it off the GUI thread: the request can take ``timeout``.
    """
    from napari_madgnet.model import ModelConfig

    name = ModelConfig(backbone=backbone).backbone  # the canonical encoder name
    if name not in IMAGENET_WEIGHTS:
        raise PretrainedWeightsError(
            f"No ImageNet weights are known for {backbone!r}; known: {', '.join(IMAGENET_WEIGHTS)}."
        )
    spec = IMAGENET_WEIGHTS[name]
    folder = weights_dir()
    base = os.environ.get("MADGNET_WEIGHTS_URL") or spec.base_url
    url = base.rstrip("/") + "/" + spec.filename
    cached = (folder / spec.filename).is_file()
    if cached or not check_download:
        return EncoderWeights(name, spec.filename, folder, url, cached)
    reason = _head(url, timeout)
    return EncoderWeights(name, spec.filename, folder, url, False, downloadable=not reason, reason=reason)


def choose_init(requested: str | None, backbone: str, *, preset: str = "imagenet") -> tuple[str, str | None]:
    """The start a run uses and a note for the user, or None.

    ``requested``: what the user asked for (None: nothing, so ``preset`` applies). A preset
    ImageNet start that is impossible here falls back to random weights ("scratch") with a note
    saying so; an ImageNet start the user asked for is kept, and fails fast through
    ``check_init``. Any other start is returned as it is.
    """
    init = requested or preset
    if init != "imagenet" or requested == "imagenet":
        return init, None
    status = encoder_weights_status(backbone)
    if status.usable:
        return "imagenet", None
    return "scratch", (
        "The ImageNet starting weights are not on this computer and cannot be downloaded now "
        f"({status.reason or 'no internet connection?'}): training from random weights instead "
        "(--init scratch). This works well for a first model on your own images."
    )


def check_init(init: str, backbone: str) -> None:
    """Fail before any work when a run must start from ImageNet weights it cannot get.

    Raises ``PretrainedWeightsError`` with a short message that says what to do.
    """
    if init != "imagenet":
        return
    status = encoder_weights_status(backbone)
    if not status.usable:
        raise PretrainedWeightsError(
            "The ImageNet starting weights are not on this computer and cannot be downloaded now "
            f"({status.reason or 'no internet connection?'}). Train from random weights instead "
            f"(--init scratch, or 'random weights' in the Fine-tune dock), or copy {status.filename} "
            f"into {status.folder}."
        )


__all__ = ["EncoderWeights", "check_init", "choose_init", "encoder_weights_status"]
