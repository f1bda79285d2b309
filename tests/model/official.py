"""Helpers that rebuild the official reference setting: released keys, weights and inputs."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import torch

from napari_madgnet.model.attention import POOLED_SIZE_BY_CHANNELS
from napari_madgnet.model.dct import dct_filters

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
BACKBONES = ("resnest50", "res2net50_v1b_26w_4s", "resnet50")
TOLERANCE = 1e-3
DECODER_CHANNELS = {1: 256, 2: 128, 3: 64, 4: 32}


def _rule():
    spec = importlib.util.spec_from_file_location("weights_rule", FIXTURES / "weights_rule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


weights_rule = _rule()
make_input = weights_rule.make_input


@cache
def manifest(backbone: str) -> dict[str, tuple[int, ...]]:
    """Official key -> shape, from the .tsv manifest."""
    shapes = {}
    lines = (FIXTURES / f"state_dict_{backbone}.tsv").read_text().splitlines()[1:]
    for line in lines:
        key, shape, *_ = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
    return shapes


def official_state(backbone: str, with_dct: bool = True) -> dict[str, torch.Tensor]:
    """The reference weights under official keys; with the DCT buffers a released file carries
    (each filter repeated over the channels, as the release stores them)."""
    shapes = manifest(backbone)
    state = weights_rule.fill_state_dict(shapes)
    if with_dct:
        for key, shape in shapes.items():
            if ".dct_weight_" not in key:
                continue
            stage = int(key[len("decoder_stage")])
            size = POOLED_SIZE_BY_CHANNELS[DECODER_CHANNELS[stage]]
            k = int(key.rsplit("_", 1)[1])
            state[key] = dct_filters(size)[k].expand(shape).clone()
    return state


@cache
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference_outputs.npz") as data:
        return {k: data[k] for k in data.files}


def relative_error(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.detach().numpy() - ref).max() / ref.std())
