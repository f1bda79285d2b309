"""Named fine-tuning settings beyond ``TrainConfig.finetune``: the first model on a laptop CPU.

``first_model_config`` is the demo's measured preset (``napari_madgnet.demo``): random weights (no
download), 64 px patches, batch 4, learning rate 2e-3, 400 steps validated every 40. On the
bundled nuclei sample it reached a Dice of 0.92-0.93 on unseen data in a few minutes on 2 CPU
cores. The Fine-tune dock offers it when no model exists yet, and ``madgnet finetune --preset
first-model`` uses it, so both train the same first model.
"""

from __future__ import annotations

from typing import Any

from napari_madgnet.training.config import TrainConfig

FIRST_MODEL_STEPS = 400
FIRST_MODEL_VALIDATE_EVERY = 40
#: The settings ``first_model_config`` changes in ``TrainConfig.finetune``.
FIRST_MODEL: dict[str, Any] = {"init": "scratch", "patch_size": 64, "batch_size": 4, "lr": 2e-3}
PRESETS: tuple[str, ...] = ("finetune", "first-model")


def first_model_config(
    *, steps: int = FIRST_MODEL_STEPS, validate_every: int = FIRST_MODEL_VALIDATE_EVERY, **overrides: Any
) -> TrainConfig:
    """The first-model preset: ``TrainConfig.finetune`` with ``FIRST_MODEL``, for ``steps`` steps.

    400 steps, not 200: at 200 the bottom-half Dice of the demo depended on rounding-level
    differences (seeds 0/1/2: 0.879/0.902/0.931, the first no better than Otsu); at 400 it was
    0.92-0.93.
    """
    base = {**FIRST_MODEL, **overrides}
    if overrides.get("from_model") and "lr" not in overrides:
        base.pop("lr")  # continuing a trained model: the preset's gentle rate, not 2e-3
    return TrainConfig.finetune(**base).with_length(steps=steps, validate_every=validate_every)


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset called ``name`` (``PRESETS``) with ``overrides``; raises ``ConfigError``."""
    from napari_madgnet.errors import ConfigError

    if name == "finetune":
        return TrainConfig.finetune(**overrides)
    if name == "first-model":
        return first_model_config(**overrides)
    raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")


__all__ = [
    "FIRST_MODEL",
    "FIRST_MODEL_STEPS",
    "FIRST_MODEL_VALIDATE_EVERY",
    "first_model_config",
    "preset_config",
]
