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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

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
    rotate_degrees: float = 0.0  # small free rotations, +- this many degrees
    scale_range: tuple[float, float] = (1.0, 1.0)  # zoom of the crop before it is resized
    brightness: float = 0.0  # additive, +- this much in [0, 1] units
    contrast: float = 0.0  # multiplicative around the mean, 1 +- this
    gamma: float = 0.0  # exponent exp(+- this)
    noise: float = 0.0  # std of Gaussian noise


@dataclass
class LossConfig:
    """Deep-supervision weights: each stage's map, distance and boundary loss is weighted."""

    map_weight: float = 1.0
    distance_weight: float = 1.0
    boundary_weight: float = 1.0
    stage_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # coarsest first
    boundary_threshold: float = 0.5  # Sobel magnitude of the mask >= this is boundary (~2 px)


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


@dataclass
class TrainConfig:
    """Everything a training run depends on; ``to_yaml``/``from_yaml`` store and restore it."""

    # model
    backbone: str = "resnest50"
    num_classes: int | None = None  # None: taken from the labels
    init: str = "imagenet"  # imagenet | scratch (ignored when from_model is given)
    from_model: str | None = None  # a saved model to start from (path or registry name)
    # data
    label_mode: str = "binary"
    normalization: str = "auto"
    sampling: str = "patch"  # patch: random crops of items; resize: whole items resized (the release)
    patch_size: int = 352
    scales: tuple[float, ...] = (1.0,)  # multi-scale training: each batch at patch_size * scale
    foreground_fraction: float = 0.5  # share of patches centred on an object pixel
    val_fraction: float = 0.2
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # optimisation
    batch_size: int = 16
    accumulate: int = 1
    epochs: int = 200
    steps_per_epoch: int | None = None  # None: one pass over the training items per epoch
    max_steps: int | None = None  # stop after this many optimiser steps, whatever the epochs
    lr: float = 1e-4
    weight_decay: float = 0.0
    scheduler: str = "constant"
    warmup_steps: int = 0
    clip_value: float | None = 0.5
    early_stopping: int | None = None  # stop after this many validations without a better Dice
    # machinery
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + GradScaler)
    # bf16 autocast on CPUs with AVX512-BF16 or AMX: pays at 352 px (1.25x the fp32 engine step on
    # 2 Zen 4 cores) but costs at small patches (96 px: 0.73x), so the fine-tuning preset turns it off.
    cpu_amp: bool = True
    # Activations in NHWC order, which oneDNN convolves without reordering. None: on the CPU in
    # fp32 only, where it measured faster (not with bf16 autocast: see engine._memory_format);
    # CUDA is left as it was (not measured on a GPU yet).
    channels_last: bool | None = None
    device: str = "auto"
    num_workers: int = 0
    seed: int = 0
    checkpoint_every: int = 50  # steps between "last" checkpoints (resume after a crash)
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
        """Raise ValueError naming the bad setting and the fix, before any work starts."""
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode {self.label_mode!r}: choose one of {', '.join(LABEL_MODES)}.")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling {self.sampling!r}: choose one of {', '.join(SAMPLINGS)}.")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}.")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r}: choose one of {', '.join(INITS)}, or set from_model.")
        if self.patch_size < 32:
            raise ValueError(f"patch_size {self.patch_size} is below the network's minimum of 32.")
        if self.batch_size < 1 or self.accumulate < 1:
            raise ValueError("batch_size and accumulate must be at least 1.")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales {self.scales} must be positive numbers, e.g. [0.75, 1, 1.25].")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction {self.val_fraction} must be in [0, 1).")
        if self.lr <= 0:
            raise ValueError(f"lr {self.lr} must be positive.")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes {self.num_classes} must be at least 1 (or None: from labels).")
        if len(self.loss.stage_weights) != 4:
            raise ValueError("loss.stage_weights needs four numbers, coarsest stage first.")

    def scaled_sizes(self) -> list[int]:
        """Patch sides of the multi-scale schedule, rounded to a multiple of 32 (PraNet's rule)."""
        return sorted({max(32, round(self.patch_size * s / 32.0) * 32) for s in self.scales})

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), for YAML and ``torch.load(weights_only=True)``."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict`` output or a hand-written YAML; unknown keys are an error."""
        return _build(cls, dict(data or {}))

    def to_yaml(self, path: str | Path) -> Path:
        import yaml

        from napari_madgnet.io import atomic_path

        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return Path(path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such recipe file; see src_train/configs/ for examples.")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: a recipe is a mapping of settings, got {type(data).__name__}.")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_NESTED = {"data": DataConfig, "augment": AugmentConfig, "loss": LossConfig}


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} setting(s) {unknown}; known: {', '.join(sorted(names))}.")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if cls is TrainConfig and key in _NESTED and isinstance(value, dict):
            value = _build(_NESTED[key], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)
