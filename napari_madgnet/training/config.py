"""Training settings as dataclasses, shared by the CLI, the Fine-tune widget and ``src_train``.

Two presets: ``TrainConfig.benchmark()`` is the authors' recipe as far as it is known (PraNet's:
Adam 1e-4, batch 16, multi-scale 256/352/448, gradient clipping by value 0.5, flips, 200 epochs);
``TrainConfig.finetune()`` suits a few annotated images (higher learning rate for a network
trained from scratch or from the ImageNet encoder, stronger augmentation, early stopping on the
validation Dice). Configs round-trip through YAML so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_madgnet.preprocess import RANGE_PER
from napari_madgnet.settings import DEVICE_NAME, build, check_fields, config_error, in_file, setting, to_plain

LABEL_MODES: tuple[str, ...] = ("binary", "multiclass", "nested", "scribble")
SCHEDULERS: tuple[str, ...] = ("constant", "cosine", "poly")
INITS: tuple[str, ...] = ("imagenet", "scratch")
SAMPLINGS: tuple[str, ...] = ("patch", "resize")


@dataclass
class AugmentConfig:
    """Random transforms applied to training patches (never to validation)."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = False
    rotate_degrees: float = setting(0.0, ge=0, le=180)  # small free rotations, +- this many degrees
    scale_range: tuple[float, float] = setting((1.0, 1.0), gt=0)  # zoom of the crop before resizing
    brightness: float = setting(0.0, ge=0, le=1)  # additive, +- this much in [0, 1] units
    contrast: float = setting(0.0, ge=0, lt=1)  # multiplicative around the mean, 1 +- this
    gamma: float = setting(0.0, ge=0, le=5)  # exponent exp(+- this)
    noise: float = setting(0.0, ge=0, le=1)  # std of Gaussian noise, in [0, 1] units

    def __post_init__(self) -> None:
        check_fields(self)
        lo, hi = self.scale_range
        if lo > hi:
            raise config_error("scale_range", f"must be [smallest, largest], got {list(self.scale_range)}.")


@dataclass
class LossConfig:
    """Deep-supervision weights: each stage's map, distance and boundary loss is weighted."""

    map_weight: float = setting(1.0, ge=0)
    distance_weight: float = setting(1.0, ge=0)
    boundary_weight: float = setting(1.0, ge=0)
    stage_weights: tuple[float, float, float, float] = setting((1.0, 1.0, 1.0, 1.0), ge=0)  # coarsest first
    # Sobel magnitude of the mask >= this is boundary (~2 px)
    boundary_threshold: float = setting(0.5, gt=0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.map_weight + self.distance_weight + self.boundary_weight == 0 or not any(self.stage_weights):
            raise config_error(
                "map_weight",
                "distance_weight and boundary_weight (or all stage_weights) are 0: nothing would be "
                "learned; give at least one a weight > 0.",
            )


@dataclass
class DataConfig:
    """Where ``madgnet train`` finds its data (arrays passed in code do not need this).

    Either ``train_images``/``train_masks`` folders of pairs matched by name, or a ``dataset``
    name from ``src_train`` with its ``root``.
    """

    train_images: str | None = None
    train_masks: str | None = None
    val_images: str | None = None
    val_masks: str | None = None
    dataset: str | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for a, b in (("train_images", "train_masks"), ("val_images", "val_masks")):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                given, missing = (a, b) if getattr(self, a) is not None else (b, a)
                raise config_error(missing, f"is missing: {given} is set, and the two go together.")


@dataclass
class TrainConfig:
    """Everything a training run depends on; ``to_yaml``/``from_yaml`` store and restore it.

    Every field is checked for its type and range when the config is made, replaced or read
    (``validate``, which training runs again first, also catches fields assigned later), so a bad
    setting fails with its name before any data is read or model built.
    """

    # model
    backbone: str = "resnest50"
    num_classes: int | None = setting(None, ge=1)  # None: taken from the labels
    init: str = setting("imagenet", choices=INITS)  # ignored when from_model is given
    from_model: str | None = None  # a saved model to start from (path or registry name)
    # data
    label_mode: str = setting("binary", choices=LABEL_MODES)
    normalization: str = "auto"
    # fit the intensity range over the whole image or stack ("image") or per plane ("plane")
    range_per: str = setting("image", choices=RANGE_PER)
    sampling: str = setting("patch", choices=SAMPLINGS)  # patch: random crops; resize: whole items
    patch_size: int = setting(352, ge=32, why="the network downsamples 32x")
    scales: tuple[float, ...] = setting((1.0,), gt=0)  # multi-scale: each batch at patch_size * scale
    foreground_fraction: float = setting(0.5, ge=0, le=1)  # share of patches centred on an object pixel
    val_fraction: float = setting(0.2, ge=0, lt=1)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # optimisation
    batch_size: int = setting(16, ge=1)
    accumulate: int = setting(1, ge=1)
    epochs: int = setting(200, ge=1)
    steps_per_epoch: int | None = setting(None, ge=1)  # None: one pass over the training items per epoch
    max_steps: int | None = setting(None, ge=1)  # stop after this many optimiser steps, whatever the epochs
    lr: float = setting(1e-4, gt=0)
    weight_decay: float = setting(0.0, ge=0)
    scheduler: str = setting("constant", choices=SCHEDULERS)
    warmup_steps: int = setting(0, ge=0)
    clip_value: float | None = setting(0.5, gt=0)  # None: no gradient clipping
    early_stopping: int | None = setting(None, ge=1)  # stop after this many validations without a better Dice
    # machinery
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler)
    # bf16 autocast on CPUs with AVX512-BF16 or AMX: pays at 352 px (1.25x the fp32 engine step on
    # 2 Zen 4 cores) but costs at small patches (96 px: 0.73x), so the fine-tuning preset turns it off.
    cpu_amp: bool = True
    # Activations in NHWC order, which oneDNN convolves without reordering. None: on the CPU in
    # fp32 only, where it measured faster (not with bf16 autocast: see engine._memory_format);
    # CUDA is left as it was (not measured on a GPU yet).
    channels_last: bool | None = None
    device: str = setting("auto", pattern=DEVICE_NAME, examples="auto, cpu, cuda, cuda:1, mps")
    num_workers: int = setting(0, ge=0)
    seed: int = setting(0, ge=0)
    checkpoint_every: int = setting(50, ge=1)  # steps between "last" checkpoints (resume after a crash)
    out_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def benchmark(cls, **overrides: Any) -> TrainConfig:
        """The authors' recipe (PraNet's), for the paper's datasets."""
        base = dict(
            patch_size=352,
            scales=(0.75, 1.0, 1.25),
            batch_size=16,
            epochs=200,
            lr=1e-4,
            scheduler="constant",
            clip_value=0.5,
            val_fraction=0.1,
            sampling="resize",
            augment=AugmentConfig(hflip=True, vflip=True),
            init="imagenet",
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def finetune(cls, **overrides: Any) -> TrainConfig:
        """A few annotated images: patches, strong augmentation, early stopping on validation Dice.

        The learning rate depends on the start: 5e-5 (below the benchmark's 1e-4) when
        ``from_model`` continues a trained MADGNet, 1e-3 when the decoder starts untrained (ImageNet
        encoder or scratch). Measured on the bundled nuclei sample (2 CPU cores, from scratch,
        64 px, lr 2e-3, 200 steps: Dice 0.909 on unseen data): see ``napari_madgnet.demo``.
        """
        base = dict(
            patch_size=96,
            scales=(1.0,),
            batch_size=4,
            epochs=20,
            steps_per_epoch=10,
            lr=5e-5 if overrides.get("from_model") else 1e-3,
            scheduler="cosine",
            warmup_steps=10,
            clip_value=0.5,
            val_fraction=0.2,
            early_stopping=8,
            foreground_fraction=0.7,
            cpu_amp=False,  # small patches: fp32 is faster on the CPU (see the field's comment)
            augment=AugmentConfig(
                hflip=True,
                vflip=True,
                rot90=True,
                rotate_degrees=15.0,
                scale_range=(0.8, 1.25),
                brightness=0.1,
                contrast=0.2,
                gamma=0.2,
                noise=0.01,
            ),
            checkpoint_every=25,
        )
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ length
    def with_length(
        self,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        validate_every: int | None = None,
    ) -> TrainConfig:
        """This config set to train for exactly ``steps`` optimiser steps or ``epochs`` epochs.

        The one place that turns "train for N steps/epochs" into a plan, used by the CLI
        (``--steps``/``--epochs``/``--validate-every``) and the Fine-tune dock. ``validate_every``:
        steps between validations (an epoch, here). A run ends earlier only through early stopping,
        which its result reports. Raises ``ConfigError`` for both or non-positive numbers.
        """
        from napari_madgnet.errors import ConfigError

        if steps is not None and epochs is not None:
            raise ConfigError("Give the training length as steps or as epochs, not both.")
        for label, value in (("steps", steps), ("epochs", epochs), ("validate_every", validate_every)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ConfigError(f"{label} must be a whole number >= 1, got {value!r}.")
        per_epoch = int(validate_every) if validate_every is not None else self.steps_per_epoch
        if steps is not None:
            # epochs x steps_per_epoch >= steps, so max_steps alone decides where the run ends
            n_epochs = math.ceil(steps / per_epoch) if per_epoch else int(steps)
            return self.replace(steps_per_epoch=per_epoch, epochs=n_epochs, max_steps=int(steps))
        if epochs is not None:
            return self.replace(steps_per_epoch=per_epoch, epochs=int(epochs), max_steps=None)
        return self.replace(steps_per_epoch=per_epoch)

    def planned_steps(self) -> int | None:
        """Optimiser steps this config will run, when that does not depend on the data."""
        if self.steps_per_epoch:
            total = self.epochs * self.steps_per_epoch
            return min(total, self.max_steps) if self.max_steps else total
        # steps per epoch >= 1, so epochs >= max_steps guarantees max_steps whatever the data
        return self.max_steps if self.max_steps and self.epochs >= self.max_steps else None

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every setting's type and range, then how they fit together; ``ConfigError`` (a
        ``ValueError``) names the bad setting and the fix, before any data is read or model built.

        Also run on construction and by ``replace``; values given in another harmless form (a list
        for a tuple, ``64.0`` for ``64``) are normalised in place.
        """
        from napari_madgnet.preprocess import Normalization

        check_fields(self)
        from napari_madgnet.model.encoders import canonical_backbone

        try:
            self.backbone = canonical_backbone(self.backbone)
        except ValueError as exc:
            raise config_error("backbone", f"is not known: {exc}.") from None
        try:
            Normalization.from_value(self.normalization)
        except ValueError as exc:
            raise config_error("normalization", f"is not known: {exc}") from None
        if not self.scales:
            raise config_error("scales", "must hold at least one zoom, e.g. [0.75, 1, 1.25].")
        if self.num_classes not in (None, 1) and self.label_mode in ("binary", "scribble"):
            raise config_error(
                "num_classes",
                f"is {self.num_classes}, but {self.label_mode} labels train one class; use label_mode "
                "multiclass (or nested) for several classes, or leave num_classes empty.",
            )

    def scaled_sizes(self) -> list[int]:
        """Patch sides of the multi-scale schedule, rounded to a multiple of 32 (PraNet's rule)."""
        return sorted({max(32, round(self.patch_size * s / 32.0) * 32) for s in self.scales})

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), for YAML and ``torch.load(weights_only=True)``."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict`` output or a hand-written YAML; unknown keys are an error."""
        return build(cls, dict(data or {}))

    def to_yaml(self, path: str | Path) -> Path:
        import yaml

        from napari_madgnet.io import atomic_path

        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return Path(path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a recipe (see ``src_train/configs/``); every error names the file and the key."""
        from napari_madgnet.errors import ConfigError
        from napari_madgnet.settings import load_yaml_mapping

        data = load_yaml_mapping(path, "recipe")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise in_file(path, exc) from None

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
