"""The axes vocabulary (T, Z, C, Y, X) and how an array is cut into planes, for inference and training.

The network sees 2-D planes of 1 (grey) or 3 (RGB) channels. Everything else (Z, T, extra
channels) is looped over or selected here, reading one plane at a time so that dask and zarr
arrays larger than memory are never loaded whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_madgnet.errors import ConfigError

AXIS_LETTERS = "TZCYX"


def check_axes(axes: str) -> str:
    """``axes`` upper-cased if it uses each of T, Z, C, Y, X at most once and includes Y and X;
    else ``ConfigError`` with examples. The one check behind ``--axes``, configs and layouts."""
    text = str(axes).strip().upper()
    if set(text) - set(AXIS_LETTERS) or len(set(text)) != len(text) or not {"Y", "X"} <= set(text):
        raise ConfigError(
            f"Unknown axes {axes!r}: use each of the letters {', '.join(AXIS_LETTERS)} at most once, "
            "including Y and X (e.g. 'YX', 'YXC', 'ZYX', 'TZYX', 'CYX', 'TYXC')."
        )
    return text


#: The most channels a guessed last axis may have: a plane is rarely this narrow, a channel axis rarely wider.
MAX_GUESSED_CHANNELS = 16


def guess_axes(shape: tuple[int, ...]) -> str:
    """A best guess of the axes of an array of this shape, for files that do not say.

    2-D: "YX". A last dimension of at most ``MAX_GUESSED_CHANNELS`` that is small next to the
    two before it (each more than 4 times larger) is channels: "YXC" / "ZYXC" / "TZYXC". Three
    or four are RGB(A) and segmented as colour; any other count (a grey + alpha pair, 5 spectral
    bands) needs a channel chosen (``resolve_layout`` asks for ``channel``, CLI ``--channel``)
    rather than being cut into a stack of slivers. Otherwise the leading dimensions are a stack:
    "ZYX", "TZYX", "TZCYX". Pass ``axes`` explicitly when the guess is wrong (e.g. a 3-channel
    "CYX" image). Raises ``ValueError`` for fewer than 2 or more than 5 dimensions.
    """
    ndim = len(shape)
    if ndim < 2 or ndim > 5:
        raise ValueError(
            f"Cannot segment a {ndim}-D array of shape {tuple(shape)}; "
            "expected 2-D to 5-D (YX, YXC, ZYX, TZYX, TZYXC...)."
        )
    if ndim == 2:
        return "YX"
    last = shape[-1]
    if last <= MAX_GUESSED_CHANNELS and min(shape[-3], shape[-2]) > 4 * last:
        return {3: "YXC", 4: "ZYXC", 5: "TZYXC"}[ndim]
    return {3: "ZYX", 4: "TZYX", 5: "TZCYX"}[ndim]


def describe_axes(axes: str, shape: tuple[int, ...]) -> str:
    """Words for a layout.

    "ZYXC", (5, 64, 80, 2) -> "5 planes (Z) of 64 x 80 pixels (Y, X), 2 channels (C)".
    """
    size = dict(zip(axes, (int(s) for s in shape), strict=True))
    words = {"T": "time points (T)", "Z": "planes (Z)"}
    parts = [f"{size[a]} {words[a]}" for a in axes if a in words]
    text = " x ".join(parts) + (" of " if parts else "") + f"{size['Y']} x {size['X']} pixels (Y, X)"
    if "C" in size:
        text += f", {size['C']} channel{'s' if size['C'] != 1 else ''} (C)"
    return text


#: An example of another reading of each guess, for ``guess_note``.
_OTHER_READING = {
    "YXC": "ZYX", "ZYXC": "TZYX", "TZYXC": "TZCYX", "ZYX": "CYX", "TZYX": "CZYX", "TZCYX": "CTZYX",
}  # fmt: skip


def guess_note(name: str, shape: tuple[int, ...], axes: str) -> str:
    """What to print when an image's axes were guessed: the guess in words and how to override it."""
    shape = tuple(int(s) for s in shape)
    other = _OTHER_READING.get(axes)
    return (
        f"{name}: the file does not say its axes; shape {shape} read as {axes!r}: "
        f"{describe_axes(axes, shape)}. If that is wrong, pass --axes"
        + (f" (e.g. --axes {other})" if other else "")
        + "; further images of this layout are read the same way."
    )


@dataclass(frozen=True)
class Layout:
    """How to cut an array into planes.

    ``axes``: the array's axes. ``stack_axes``: those looped over (T, Z), in array order.
    ``channels``: None (no C axis), an int (that channel as grey), or "rgb" (first three channels).
    """

    axes: str
    shape: tuple[int, ...]
    channels: int | str | None

    @property
    def stack_axes(self) -> str:
        return "".join(a for a in self.axes if a not in "CYX")

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.stack_axes)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]

    @property
    def output_axes(self) -> str:
        """Axes of the label image: the input's without C, in the input's order."""
        return self.axes.replace("C", "")

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.axes.index(a)] for a in self.output_axes)

    @property
    def n_channels(self) -> int:
        """Channels the network gets: 3 for RGB, 1 otherwise."""
        return 3 if self.channels == "rgb" else 1

    @property
    def n_planes(self) -> int:
        return math.prod(self.stack_shape)

    def plane_indices(self) -> Iterator[tuple[int, ...]]:
        """Stack indices (one int per stack axis) of every plane, in C order."""
        return itertools.product(*(range(n) for n in self.stack_shape))

    def _key(self, stack_index: tuple[int, ...]) -> tuple[Any, ...]:
        key: list[Any] = []
        pos = dict(zip(self.stack_axes, stack_index, strict=True))
        for a in self.axes:
            if a in pos:
                key.append(pos[a])
            elif a == "C":
                key.append(self.channels if isinstance(self.channels, int) else slice(0, 3))
            else:
                key.append(slice(None))
        return tuple(key)

    def read_plane(self, image: Any, stack_index: tuple[int, ...]) -> np.ndarray:
        """One plane as a (H, W, C) numpy array, reading only that plane from lazy arrays."""
        plane = np.asarray(image[self._key(stack_index)])
        kept = [a for a in self.axes if a in "YX" or (a == "C" and self.channels == "rgb")]
        order = [kept.index(a) for a in ("Y", "X", "C") if a in kept]
        plane = plane.transpose(order)
        return plane[..., None] if plane.ndim == 2 else plane

    def selection(self, image: Any) -> Any:
        """The pixels normalisation is fitted on (the chosen channel(s)), lazily for dask/zarr."""
        if "C" not in self.axes:
            return image
        if not isinstance(image, np.ndarray):
            import dask.array as da

            image = image if isinstance(image, da.Array) else da.from_array(image, chunks="auto")
        key = tuple(
            (self.channels if isinstance(self.channels, int) else slice(0, 3)) if a == "C" else slice(None)
            for a in self.axes
        )
        return image[key]


def resolve_layout(shape: tuple[int, ...], axes: str | None = None, channel: int | None = None) -> Layout:
    """Check ``axes`` against ``shape`` (or guess them) and decide how channels are used.

    Errors say what is wrong and what to pass instead.
    """
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        raise ValueError(f"The image has a zero-length axis (shape {shape}); there is nothing to segment.")
    if axes is None:
        axes = guess_axes(shape)
    axes = check_axes(axes)
    if len(axes) != len(shape):
        raise ValueError(
            f"Axes {axes!r} name {len(axes)} dimensions but the image has {len(shape)} (shape {shape}); "
            f"for example {guess_axes(shape) if 2 <= len(shape) <= 5 else 'YX'!r}."
        )
    channels: int | str | None = None
    if "C" in axes:
        n = shape[axes.index("C")]
        if channel is not None:
            if not 0 <= channel < n:
                raise ValueError(
                    f"channel={channel} asked for, but the image has {n} channel(s) (0..{n - 1})."
                )
            channels = int(channel)
        elif n == 1:
            channels = 0
        elif n in (3, 4):
            channels = "rgb"  # alpha, if any, is dropped
        else:
            raise ValueError(
                f"The image has {n} channels along C; the network takes grey or RGB(A). "
                f"Choose one channel with channel=0..{n - 1} (CLI: --channel)."
            )
    elif channel is not None and channel != 0:
        raise ValueError(f"channel={channel} asked for, but axes {axes!r} have no channel axis C.")
    return Layout(axes=axes, shape=shape, channels=channels)


def axes_for_labels(image_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> str:
    """Axes of an image whose labels have ``labels_shape`` (training data given without axes).

    Equal shapes: by the labels' dimensions ("YX", "ZYX", "TZYX"). One more dimension in the image:
    that dimension is C, last ("YXC", RGB as napari shows it) or first ("CYX"). Anything else
    raises ``ConfigError`` saying that the labels must cover the image pixel for pixel.
    """
    image_shape, labels_shape = tuple(image_shape), tuple(labels_shape)
    spatial = {2: "YX", 3: "ZYX", 4: "TZYX"}.get(len(labels_shape))
    if spatial is not None:
        if image_shape == labels_shape:
            return spatial
        if len(image_shape) == len(labels_shape) + 1:
            if image_shape[:-1] == labels_shape:
                return spatial + "C"
            if image_shape[1:] == labels_shape:
                return "C" + spatial
    raise ConfigError(
        f"Image shape {image_shape} and labels shape {labels_shape} do not match: the labels must cover "
        "the image pixel for pixel (an image may add one channel axis, e.g. RGB). Draw the labels on "
        "this image, pick the matching image/labels pair, or give the image's axes (--axes)."
    )
