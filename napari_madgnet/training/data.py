"""Training data: arrays or folders -> checked items -> a deterministic stream of augmented samples.

Checks come first and fail with a message that names the problem and the fix, before any model is
built. Sample ``i`` of the stream is drawn from a generator seeded by (seed, i), so a resumed run,
a run with DataLoader workers and every DDP rank see exactly the samples the plan says.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from napari_madgnet.errors import ConfigError, UserError
from napari_madgnet.layout import axes_for_labels, resolve_layout
from napari_madgnet.metrics import binary_truth, truth_note
from napari_madgnet.preprocess import check_image_dtype, fit_ranges
from napari_madgnet.training import augment
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.targets import boundary_target, distance_target, labels_to_masks


class DataError(UserError):
    """Training data that cannot be used; the message says what is wrong and how to fix it."""


@dataclass
class Item:
    """One annotated 2-D plane: image (C, H, W) in [0, 1], target and valid masks (K, H, W).

    ``plane``: for a plane of a stack or time series, its 0-based index along ``plane_axes`` (the
    stack axes, e.g. "Z" or "TZ", as napari's sliders number them); None for a 2-D image, a file
    or a region.
    """

    image: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    name: str = ""
    _fg: np.ndarray | None = field(default=None, repr=False)
    plane: tuple[int, ...] | None = None
    plane_axes: str = ""

    def load(self) -> Item:
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[2]

    def foreground(self) -> np.ndarray:
        """Flat indices of object pixels (annotated ones in scribble mode), for patch centres."""
        if self._fg is None:
            self._fg = np.flatnonzero((self.target * self.valid).max(axis=0) > 0)
        return self._fg


@dataclass
class FileItem:
    """An image/mask file pair read when a sample needs it (large datasets stay on disk)."""

    image_path: Path
    mask_path: Path
    label_mode: str
    num_classes: int
    normalization: str
    binarize: bool = True  # binary mode: masks by the shared ground-truth rule (metrics.binary_truth)

    @property
    def name(self) -> str:
        return self.image_path.stem

    def load(self) -> Item:
        from napari_madgnet.io import read_image, read_mask

        image = np.asarray(read_image(self.image_path))
        mask = read_mask(self.mask_path)
        if mask.ndim == 3:  # RGB(A) masks as some datasets ship them
            mask = mask[..., 0]
        if self.binarize and self.label_mode == "binary":
            mask = binary_truth(mask).astype(np.uint8)
        items, _ = items_from_arrays(
            image,
            mask,
            label_mode=self.label_mode,
            normalization=self.normalization,
            num_classes=self.num_classes,
            name=self.name,
            check=False,
        )
        return items[0]


AnyItem = Item | FileItem


# --------------------------------------------------------------------------------------------- arrays
def check_labels(labels: np.ndarray) -> np.ndarray:
    """Labels must be integers (or bool); floats usually mean a probability map was picked."""
    lab = np.asarray(labels)
    if lab.dtype == bool:
        return lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataError(
            f"The labels are {lab.dtype}, not integers: pick a Labels layer (or a mask file) whose "
            "values are 0 = background, 1..K = classes; convert a probability map with "
            "(probability >= 0.5).astype(int) first."
        )
    if lab.size and lab.min() < 0:
        raise DataError("The labels contain negative values; use 0 for background and 1..K for classes.")
    return lab


def _values_text(values: np.ndarray, n: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:n])
    return "{" + shown + (f", ... ({len(values)} values)" if len(values) > n else "") + "}"


def class_count(lab: np.ndarray, label_mode: str, num_classes: int | None) -> tuple[int, list[str]]:
    """The number of classes ``lab`` trains in ``label_mode``, and warnings for the user.

    Multiclass and nested labels number their classes 1..K without gaps (0 = background). Without
    ``num_classes``, a gap is an error (labels {0, 255} would make a 255-class model that never sees
    classes 1..254; {0, 1, 2, 100} a 100-class one), and labels with one object value suggest
    binary mode. With ``num_classes``, classes without pixels are allowed (painted elsewhere, or
    later) and named in a warning; values above it are an error.
    """
    if label_mode in ("binary", "scribble"):
        return 1, []
    top = int(lab.max(initial=0))
    if num_classes is not None:
        if top > num_classes:
            raise DataError(
                f"Labels go up to {top} but num_classes is {num_classes}; raise num_classes, or renumber "
                f"the classes 1..{num_classes}."
            )
        present = _present(lab, top)
        missing = [k for k in range(1, num_classes + 1) if k not in present]
        notes = []
        if missing:
            notes.append(
                f"Class(es) {_values_text(np.array(missing))} of 1..{num_classes} have no pixel in these "
                "labels: the model will not learn them from this data."
            )
        return int(num_classes), notes
    present = sorted(v for v in _present(lab, top) if v > 0)
    if top != len(present):
        values = _values_text(np.array([0, *present]) if (lab == 0).any() else np.array(present))
        hint = (
            f" They look like a binary mask (one object value, {present[0]}): use label mode binary."
            if len(present) == 1
            else " Renumber the classes 1..K (e.g. skimage.segmentation.relabel_sequential), or set "
            "num_classes to train K classes of which some are not painted here."
        )
        raise DataError(
            f"{label_mode.capitalize()} labels number their classes 1..K without gaps (0 = background), "
            f"but these hold the values {values}: {top - len(present)} class id(s) between 1 and {top} "
            f"have no pixel, so the model would get {top} outputs, most never trained.{hint}"
        )
    return top, []


def _present(lab: np.ndarray, top: int) -> set[int]:
    """The values in ``lab``: a bincount for small ids (O(n)), ``np.unique`` for large ones."""
    if top <= 65535:
        return {int(v) for v in np.flatnonzero(np.bincount(lab.ravel().astype(np.intp), minlength=1))}
    return {int(v) for v in np.unique(lab)}


def teaching_notes(planes: Sequence[np.ndarray], label_mode: str) -> list[str]:
    """Warnings for labels that cannot teach a segmentation: no background, or (scribbles) no
    background scribble. ``planes``: the annotated label planes (those training uses)."""
    if label_mode == "scribble":
        if not any((p == 2).any() for p in planes):
            return [
                "The scribbles mark objects (1) but no background (2): the model cannot learn what is not "
                "an object and will call everything object. Scribble some background with value 2."
            ]
        return []
    if not any((p == 0).any() for p in planes):
        return [
            "Every annotated pixel is object (no background, value 0): the model cannot learn what is "
            "not an object, and a validation Dice of 1.0 would mean nothing. Annotate a region that "
            "holds background too."
        ]
    return []


def items_from_arrays(
    image: Any,
    labels: Any,
    *,
    label_mode: str = "binary",
    normalization: str = "auto",
    num_classes: int | None = None,
    axes: str | None = None,
    channel: int | None = None,
    name: str = "image",
    check: bool = True,
    range_per: str = "image",
    notes: list[str] | None = None,
) -> tuple[list[Item], int]:
    """Split an image and its labels into annotated 2-D items; return them and the class count.

    ``axes``/``channel``: the image's layout in the inference vocabulary (``layout``: "YX",
    "YXC", "CYX", "ZYX", "TZYXC"...; None: from the shapes, ``layout.axes_for_labels``), so an
    image trains the way ``segment`` reads it. The labels have the image's axes without C.
    2-D images give one item; stacks and time series give one item per plane that carries labels,
    so sparse annotation works: unlabelled planes are simply not used. The image is read plane by
    plane (dask/zarr stay lazy) and normalised as inference normalises it (``preprocess.fit_ranges``,
    one range per image or per plane as ``range_per`` says). Binary labels are binarised by the
    shared ground-truth rule (``metrics.binary_truth``: label ids and one-valued masks > 0, grey-edged
    pictures > half their maximum); multiclass ids are checked by ``class_count``.

    ``notes``: a list that receives sentences for the user (labels without background, a grey-edged
    mask, an image with no signal); without it they are dropped. Raises ``DataError`` (a
    ``UserError``) for unusable data.
    """
    notes = notes if notes is not None else []
    lab = check_labels(labels)
    if lab.ndim < 2:
        raise DataError(f"Labels must be at least 2-D, got shape {tuple(lab.shape)}.")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    check_image_dtype(image.dtype)  # the same dtype policy as inference
    if axes is None:
        try:
            axes = axes_for_labels(tuple(image.shape), lab.shape)
        except ConfigError as exc:  # for training data this is the data's problem
            raise DataError(str(exc)) from None
    layout = resolve_layout(tuple(image.shape), axes, channel)
    if layout.output_shape != tuple(lab.shape):
        raise DataError(
            f"Labels shape {tuple(lab.shape)} does not match the image's {layout.output_shape} "
            f"(image shape {tuple(image.shape)} read as {layout.axes}): the labels must cover the image "
            "pixel for pixel, without its channel axis."
        )
    if layout.output_axes[-2:] != "YX":
        raise DataError(f"Axes {layout.axes!r}: Y and X must be the last spatial axes, in that order.")
    if label_mode == "scribble" and lab.max(initial=0) > 2:
        raise DataError(
            f"Scribble labels use 1 = object, 2 = background, 0 = not annotated; found value {lab.max()}. "
            "Use label_mode 'binary' or 'multiclass' for full annotations."
        )
    if label_mode == "binary":
        if note := truth_note(lab, "The labels"):
            notes.append(note)
        lab = binary_truth(lab).astype(np.uint8)
    fg_value = 1 if label_mode == "scribble" else None
    has_fg = (lab == fg_value).any() if fg_value else (lab > 0).any()
    if check and not has_fg:
        raise DataError(
            "The labels have no foreground (no pixel > 0"
            + (" / == 1 in scribble mode" if fg_value else "")
            + "): paint at least one object on at least one plane before training."
        )
    k, class_notes = class_count(lab, label_mode, num_classes)
    # unannotated planes of a sparse stack are not used
    planes = [(i, index) for i, index in enumerate(layout.plane_indices()) if (lab[index] > 0).any()]
    if not planes:
        raise DataError("No plane of the labels carries an annotation; paint at least one plane.")
    if check:
        notes.extend(class_notes)
        notes.extend(teaching_notes([lab[index] for _, index in planes], label_mode))
    ranges = fit_ranges(image, layout, normalization, range_per)
    items: list[Item] = []
    for i, index in planes:
        target, valid = labels_to_masks(lab[index], label_mode, k)
        plane = np.moveaxis(ranges.read(image, index), -1, 0)
        stack = layout.n_planes > 1
        suffix = f"[{i}]" if stack else ""
        items.append(
            Item(
                np.ascontiguousarray(plane),
                target,
                valid,
                name=f"{name}{suffix}",
                plane=tuple(int(v) for v in index) if stack else None,
                plane_axes=layout.stack_axes if stack else "",
            )
        )
    if check:
        notes.extend(ranges.notes)
    return items, k


# -------------------------------------------------------------------------------------------- folders
def pair_files(images: str | os.PathLike[str], masks: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Match image and mask files by name (a mask may add a suffix such as ``_mask``).

    Any of tif/png/jpg/bmp/npy on both sides; an image without a mask is an error listing it.
    """
    from napari_madgnet.io import find_images

    image_files = find_images([images])
    mask_files = find_images([masks])
    by_stem = {m.stem.lower(): m for m in mask_files}
    pairs, missing = [], []
    for f in image_files:
        stem = f.stem.lower()
        match = by_stem.get(stem)
        if match is None:
            cands = [
                m for s, m in by_stem.items() if s.startswith(stem) and s[len(stem) : len(stem) + 1] in "_-. "
            ]
            match = cands[0] if len(cands) == 1 else None
        if match is None:
            missing.append(f.name)
        else:
            pairs.append((f, match))
    if missing:
        raise DataError(
            f"{len(missing)} image(s) in {images} have no mask in {masks} (e.g. {', '.join(missing[:3])}); "
            "masks must share the image's name, optionally with a suffix such as _mask."
        )
    return pairs


def items_from_folders(
    images: str | os.PathLike[str], masks: str | os.PathLike[str], cfg: TrainConfig, num_classes: int = 1
) -> list[FileItem]:
    return [
        FileItem(i, m, cfg.label_mode, num_classes, cfg.normalization) for i, m in pair_files(images, masks)
    ]


# ---------------------------------------------------------------------------------------------- split
#: The network's smallest input side (it downsamples 32 x); a validation part is at least this.
MIN_SIDE = 32


#: From this many annotated planes of one stack on, validation holds out whole planes, spread over
#: the stack (``hold_out_planes``); fewer keep the general rule of ``split_items``.
MIN_PLANES_TO_HOLD_OUT = 3


#: Said when a stack has 2 annotated planes: the split is the general one, but its numbers say
#: little (benchmarks/bench_sparse_planes.py: validation Dice 0.954 on the one held-out plane, 0.759
#: on the unannotated planes, where an Otsu threshold gets 0.76-0.80).
TWO_PLANES_NOTE = (
    "Only 2 planes are annotated: {train} trains and {val} validates (0-based), so the model learns "
    "from one plane and the validation Dice comes from one plane; it says little about the rest of the "
    "stack. Annotate 4 or more planes, spread over the stack: from 3 on, whole planes are held out."
)


@dataclass
class Split:
    """Training and validation items, and a sentence for the user when the split is not the usual.

    ``heldout``: the names of the stack planes held out for validation (``plane_name``: 0-based,
    as napari's sliders show them), when validation holds out whole annotated planes of a stack.
    """

    train: list[AnyItem]
    val: list[AnyItem]
    note: str = ""
    heldout: list[str] = field(default_factory=list)


def plane_name(item: AnyItem) -> str:
    """"Z 18", or "T 2, Z 18" for a plane of a time series of stacks; the item's name when it is
    no stack plane. Indices are 0-based, as napari's sliders show them."""
    plane = getattr(item, "plane", None)
    if plane is None:
        return item.name
    return ", ".join(f"{a} {i}" for a, i in zip(item.plane_axes, plane, strict=True))


def plane_names_text(names: Sequence[str]) -> str:
    """Plane names (``plane_name``) as one phrase: "Z 6, 12 and 24" when they share one stack
    axis, else "T 0, Z 6; T 1, Z 6"."""
    heads = {n.split(" ", 1)[0] for n in names}
    single = len(heads) == 1 and all("," not in n and " " in n for n in names)
    if not single:
        return "; ".join(names)
    numbers = [n.split(" ", 1)[1] for n in names]
    listed = numbers[0] if len(numbers) == 1 else f"{', '.join(numbers[:-1])} and {numbers[-1]}"
    return f"{next(iter(heads))} {listed}"


def hold_out_planes(items: Sequence[Item], val_fraction: float) -> Split:
    """Validation on whole annotated planes of a stack, none of whose pixels train.

    ``items``: at least ``MIN_PLANES_TO_HOLD_OUT`` stack planes (``Item.plane`` set). A
    ``val_fraction`` of them (at least 1, and at most all but 2, so 1 of 3 to 7 planes with the
    default 0.2, 2 of 8 to 12) validate, chosen evenly spread over the annotated planes in stack
    order and away from its ends (1 of 4 annotated planes: the third; 2 of 8: the third and the
    seventh), so the validation planes lie between training planes as the unannotated planes do,
    and a user can tell in advance which ones they are. ``note`` names them (0-based).
    """
    order = sorted(range(len(items)), key=lambda i: items[i].plane or ())
    n = len(order)
    n_val = min(n - 2, max(1, round(n * val_fraction)))
    picked = sorted({order[int((j + 0.5) * n / n_val)] for j in range(n_val)})
    val = [items[i] for i in picked]
    train = [items[i] for i in order if i not in picked]
    held = [plane_name(it) for it in val]
    note = (
        f"Validation holds out {n_val} of the {n} annotated planes: {plane_names_text(held)} (0-based, as "
        f"napari's slider shows them). No training patch comes from {'it' if n_val == 1 else 'them'}, "
        f"so the validation Dice says how the model does on planes it did not see; it trains on "
        f"{plane_names_text([plane_name(it) for it in train])}."
    )
    return Split(train, val, note, held)


def split_items(
    items: Sequence[AnyItem], val_fraction: float, seed: int, patch_size: int | None = None
) -> Split:
    """Training and validation items, the same for the same seed; the one check of patch sizes.

    At least ``MIN_PLANES_TO_HOLD_OUT`` annotated planes of a stack: whole planes validate,
    spread over the stack (``hold_out_planes``; ``note`` and ``heldout`` name them). Other sets
    of several items (files, regions, 2 planes): a seeded ``val_fraction`` of them (at least one)
    validates; for 2 stack planes ``note`` warns that one plane trains and one validates
    (``TWO_PLANES_NOTE``). One 2-D item: its last rows or columns (along the longer side; ``val_fraction`` of
    it, at least ``MIN_SIDE`` px) validate and the rest trains, so no pixel is in both. When the
    item is too small to leave ``MIN_SIDE`` px on each side, or ``val_fraction`` is 0, everything
    trains and nothing validates (``note`` says so; the last model is then the result). Raises
    ``DataError`` when ``patch_size`` is larger than every training item, naming the largest
    patch that fits.
    """
    items = list(items)
    planes = [it for it in items if isinstance(it, Item) and it.plane is not None]
    if val_fraction <= 0:
        split = Split(items, [], "Validation is off (validation share 0): the last model is kept.")
    elif len(items) >= MIN_PLANES_TO_HOLD_OUT and len(planes) == len(items):
        split = hold_out_planes(planes, val_fraction)
    elif len(items) >= 2:
        n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
        order = np.random.default_rng(seed).permutation(len(items))
        val = sorted(order[:n_val].tolist())
        split = Split([items[i] for i in range(len(items)) if i not in val], [items[i] for i in val])
        if len(planes) == 2:
            held, trained = plane_name(split.val[0]), plane_name(split.train[0])
            split.note = TWO_PLANES_NOTE.format(val=held, train=trained)
    else:
        split = _split_one(items[0].load(), val_fraction)
    if patch_size is not None:
        _check_patch_size(split, patch_size)
    return split


def _split_one(item: Item, val_fraction: float) -> Split:
    h, w = item.shape
    axis = 1 if h >= w else 2
    side = item.image.shape[axis]
    n_val = max(MIN_SIDE, round(side * val_fraction))
    if side - n_val < MIN_SIDE:
        return Split(
            [item],
            [],
            f"The annotated image ({h} x {w}) is too small to hold out a validation part (each part "
            f"needs at least {MIN_SIDE} px along the longer side, so at least {2 * MIN_SIDE} px): "
            "training on all of it without validation; the last model is kept. Annotate a larger "
            "region or a second plane to get a validation Dice.",
        )
    cut = side - n_val

    def part(sl: slice, tag: str) -> Item:
        idx = [slice(None)] * 3
        idx[axis] = sl
        t = tuple(idx)
        return Item(item.image[t], item.target[t], item.valid[t], name=f"{item.name}:{tag}")

    return Split([part(slice(0, cut), "train")], [part(slice(cut, None), "val")])


def largest_patch(items: Sequence[AnyItem]) -> int | None:
    """The largest patch side (a multiple of 32) that fits in the largest training item; None
    when the items are files (read later) or even 32 px do not fit."""
    sides = [min(it.shape) for it in items if isinstance(it, Item)]
    if not sides:
        return None
    best = (max(sides) // 32) * 32
    return best if best >= MIN_SIDE else None


def _check_patch_size(split: Split, patch_size: int) -> None:
    sides = [min(it.shape) for it in split.train if isinstance(it, Item)]
    if not sides or patch_size <= max(sides):
        return
    h, w = max((it.shape for it in split.train if isinstance(it, Item)), key=min)
    fit = largest_patch(split.train)
    held = " after holding out the validation part" if split.val and len(split.train) == 1 else ""
    advice = (
        f"use a patch size of {fit} or smaller"
        if fit
        else f"the training part is below the network's minimum of {MIN_SIDE} px; annotate a larger region"
    )
    extra = " (or a validation share of 0 to train on all of it)" if held else ""
    raise DataError(
        f"Patch size {patch_size} is larger than the training image ({h} x {w}{held}); {advice}{extra}."
    )


def check_patch_size(items: Sequence[AnyItem], patch_size: int) -> None:
    """Refuse a patch larger than every training item (it would be mostly padding)."""
    _check_patch_size(Split(list(items), []), patch_size)


# ------------------------------------------------------------------------------------------- sampling
class StreamSampler(Sampler[int]):
    """Sample indices of micro-batches ``start .. start + count`` for one rank.

    Rank r of W takes sample ``(g * W + r) * B + b`` of global micro-batch g: the ranks share out
    every batch (as a DistributedSampler would) and a resumed run starts at its exact batch.
    """

    def __init__(self, batch_size: int, start: int, count: int, rank: int = 0, world: int = 1) -> None:
        self.batch_size, self.start, self.count, self.rank, self.world = batch_size, start, count, rank, world

    def __iter__(self) -> Iterator[int]:
        for g in range(self.start, self.start + self.count):
            base = (g * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)

    def __len__(self) -> int:
        return self.count * self.batch_size


class TrainStream(Dataset):
    """Sample ``i`` of an endless stream of augmented training samples, deterministic in (seed, i)."""

    def __init__(self, items: Sequence[AnyItem], cfg: TrainConfig, batch_size: int, world: int = 1) -> None:
        self.items = list(items)
        self.cfg = cfg
        self.batch_size = batch_size
        self.world = world
        self.sizes = cfg.scaled_sizes()
        areas = np.array([math.prod(it.shape) if isinstance(it, Item) else 1 for it in self.items], float)
        self.p = areas / areas.sum()

    def __len__(self) -> int:
        return 2**62

    def size_of(self, index: int) -> int:
        """Patch side of the micro-batch this sample is in (multi-scale: one size per batch)."""
        g = index // (self.batch_size * self.world)
        return self.sizes[int(np.random.default_rng([self.cfg.seed, 1, g]).integers(len(self.sizes)))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, 0, index])
        size = self.size_of(index)
        if self.cfg.sampling == "resize":
            n = len(self.items)
            order = np.random.default_rng([self.cfg.seed, 2, index // n]).permutation(n)
            item = self.items[order[index % n]].load()
            image, target, valid = _resize(item.image, item.target, item.valid, size)
            _, _zoom, angle = augment.crop_side(size, self.cfg.augment, rng)
            if angle:
                image, target, valid = augment.rotate_center_crop(
                    [
                        np.pad(a, ((0, 0), (size // 2, size // 2), (size // 2, size // 2)))
                        for a in (image, target, valid)
                    ],
                    [1, 0, 0],
                    angle,
                    size,
                )
        else:
            item = self.items[int(rng.choice(len(self.items), p=self.p))].load()
            image, target, valid = self._patch(item, size, rng)
        image, target, valid = augment.flips([image, target, valid], self.cfg.augment, rng)
        image = augment.intensity(image, self.cfg.augment, rng)
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(target),
            "valid": torch.from_numpy(valid),
            "boundary": torch.from_numpy(boundary_target(target, self.cfg.loss.boundary_threshold)),
            "distance": torch.from_numpy(distance_target(target)),
        }

    def _patch(self, item: Item, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """A crop centred near an object pixel (with probability foreground_fraction) or anywhere."""
        side, zoom, angle = augment.crop_side(size, self.cfg.augment, rng)
        h, w = item.shape
        fg = item.foreground()
        if fg.size and rng.random() < self.cfg.foreground_fraction:
            cy, cx = divmod(int(fg[rng.integers(fg.size)]), w)
            jitter = side // 4
            cy += int(rng.integers(-jitter, jitter + 1))
            cx += int(rng.integers(-jitter, jitter + 1))
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0 = _clamp_start(cy - side // 2, side, h)
        x0 = _clamp_start(cx - side // 2, side, w)
        arrays = [_window(a, y0, x0, side) for a in (item.image, item.target, item.valid)]
        inner = math.ceil(size * zoom)
        arrays = augment.rotate_center_crop(arrays, [1, 0, 0], angle, min(inner, side))
        return _resize(*arrays, size)


def _clamp_start(start: int, side: int, length: int) -> int:
    """Keep the window inside the image when it fits; centre it when it does not."""
    if side >= length:
        return (length - side) // 2
    return min(max(start, 0), length - side)


def _window(arr: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """``arr[:, y0:y0+side, x0:x0+side]`` with zeros outside (valid = 0 there: no loss)."""
    c, h, w = arr.shape
    out = np.zeros((c, side, side), np.float32)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + side, h), min(x0 + side, w)
    out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = arr[:, ys:ye, xs:xe]
    return out


def _resize(image: np.ndarray, target: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Image bilinear, masks nearest, to size x size (no-op when already there)."""
    if image.shape[1:] == (size, size):
        return image, target, valid
    img = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(image))[None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )
    masks = torch.from_numpy(np.ascontiguousarray(np.concatenate([target, valid])))[None]
    masks = F.interpolate(masks, size=(size, size), mode="nearest")[0].numpy()
    k = target.shape[0]
    return img[0].numpy(), masks[:k], masks[k:]
