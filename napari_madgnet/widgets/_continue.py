"""Continuing the current model on corrected regions: the worker body and what it needs.

All the training behaviour is the core's ``training.iter_continue_finetune`` (docs/heads.md,
part 3): it copies the model, trains on the annotated regions only, restores the Adam moments
of the model's own run folder when that folder's last state holds exactly these weights, and
says in ``TrainResult.continued`` whether it did. This module only finds the pieces: which
model is "current", where its run folder is, and the settings (``continue_config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The smallest patch side the network takes (it downsamples 32x).
MIN_PATCH = 32


@dataclass(frozen=True)
class CurrentModel:
    """The model a round continues: ``ref`` (a registry name or checkpoint path) and where the
    choice came from, in words, for the dock."""

    ref: str
    name: str
    source: str


def model_of_layer(layer: Any) -> CurrentModel | None:
    """The model that made a layer (its provenance record, as the Segment dock writes it)."""
    prov = ((getattr(layer, "metadata", None) or {}).get("madgnet_provenance") or {}).get("model") or {}
    path, name = prov.get("path"), prov.get("name")
    if path and Path(path).is_file():
        return CurrentModel(str(path), str(name or Path(path).stem), f"made '{layer.name}'")
    return None


def previous_run_of(model_ref: str) -> Path | None:
    """The run folder a registered model was trained in (``<model stem>_run`` beside its file,
    ``training.finetune.plan_output``), or None when there is none."""
    from napari_madgnet.registry import resolve_model

    path = Path(resolve_model(model_ref).path)
    run = path.with_name(path.stem + "_run")
    return run if run.is_dir() else None


def patch_for(regions: list[Any], patch_size: int) -> int:
    """The model's patch size, or less when the corrected regions are smaller (a multiple of
    ``MIN_PATCH``; the network is fully convolutional, so smaller patches train the same weights)."""
    side = min(min(r.box[2] - r.box[0], r.box[3] - r.box[1]) for r in regions)
    return patch_size if side >= patch_size else max(MIN_PATCH, side // MIN_PATCH * MIN_PATCH)


def continue_job(
    token: Any,
    image: Any,
    labels: Any,
    model_ref: str,
    regions: list[Any],
    steps: int,
    device: str,
    axes: str,
    name: str,
    folder: str,
    image_name: str,
):
    """Worker body: load the current model, continue it on ``regions`` for ``steps`` steps."""
    from napari_madgnet.jobs import Progress
    from napari_madgnet.registry import load_registered_model
    from napari_madgnet.training.continued import continue_config, iter_continue_finetune

    yield Progress(0.0, "Loading the current model")
    model = load_registered_model(model_ref)
    cfg = continue_config(model, steps, device=device)
    patch = patch_for(regions, cfg.patch_size)
    if patch != cfg.patch_size:
        cfg = cfg.replace(patch_size=patch)
        yield Progress(0.0, f"Training on {patch} px patches (the corrected regions are that small)")
    try:
        return (
            yield from iter_continue_finetune(
                model,
                image,
                labels,
                regions=regions,
                config=cfg,
                previous_run=previous_run_of(model_ref),
                name=name,
                folder=folder,
                axes=axes,
                cancel=token,
                image_name=image_name,
            )
        )
    finally:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def continued_line(result: Any, base: str) -> str:
    """The status line after a round: the new model and what happened to the optimiser state."""
    info = result.continued or {}
    state = info.get("optimizer_state", "fresh")
    how = "optimiser state restored" if state == "restored" else "optimiser started fresh"
    return (
        f"Continued '{base}' for {result.steps} step(s): '{result.model_name}' saved; {how} "
        f"({info.get('detail', '')})."
    )
