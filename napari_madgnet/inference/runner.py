"""Running the network on batches, surviving out-of-memory.

A MADGNet runs as its fast inference copy (``fast_model``: BatchNorm folded, convolutions
packed for oneDNN on the CPU; 1.2x the plain eager forward there); the caller's model is neither
modified nor moved. Callers that segment many images with one model (the CLI, the Segment
widget's model cache, evaluation) make the copy once with ``fast_model`` and pass that.
Other networks run as they are.

On an out-of-memory error the batch is split in halves and retried; when even one tile does not
fit, the model moves to the CPU with a visible warning. The engine forwards the runner's
``notes`` as progress messages so the user sees why a run slowed down.
"""

from __future__ import annotations

import warnings

import torch

from napari_madgnet.device import autocast
from napari_madgnet.inference.heads import OutputSpec, forward_outputs, map_logits
from napari_madgnet.model import MADGNet, inference_copy
from napari_madgnet.model.optimize import pack_convolutions

_OOM_TYPES: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t
)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OOM errors and the RuntimeErrors some backends (MPS, older CUDA) raise."""
    return isinstance(exc, _OOM_TYPES) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def default_batch_size(device: torch.device) -> int:
    """Tiles per forward pass: 8 on GPUs; 1 on the CPU, where larger batches are no faster per
    image and much slower at large tiles (512 px: 0.30 s per tile alone, 0.39 s in fours)."""
    return 1 if device.type == "cpu" else 8


def fast_model(model: torch.nn.Module) -> torch.nn.Module:
    """What the engine runs for ``model``: a MADGNet's inference copy (an inference copy is
    returned as it is, so passing one avoids copying again per image); other networks as given."""
    if not isinstance(model, MADGNet):
        return model
    if getattr(model, "bn_folded", False):  # already an inference copy
        return pack_convolutions(model)
    return inference_copy(model)


def _prepared(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return fast_model(model).eval().to(device)


class Runner:
    """Sigmoid probabilities of a model on (B, C, H, W) float32 CPU tensors, batch by batch.

    ``outputs``: what each call returns (``heads.OutputSpec``). The default is the map alone,
    (B, K, H, W), computed by the plain ``model(x)``; a spec asking for the E-SDM heads, the
    uncertainty or flip TTA makes each call return the (B, K * len(outputs.names), H, W) stack of
    ``heads.forward_outputs`` (blocks in ``outputs.names`` order; split it with
    ``outputs.split``). Such a spec needs a network with ``forward_stages`` (a MADGNet).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        batch_size: int | None = None,
        mixed_precision: bool = True,
        in_channels: int | None = None,
        outputs: OutputSpec | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, int(batch_size)) if batch_size else default_batch_size(device)
        self.mixed_precision = mixed_precision
        self.in_channels = in_channels
        self.outputs = outputs or OutputSpec()
        if self.outputs.needs_stages and not hasattr(model, "forward_stages"):
            raise ValueError(
                f"{type(model).__name__} has no forward_stages: the distance/boundary heads and the stage "
                "uncertainty need a MADGNet; ask for the map only (no watershed instances, no uncertainty)."
            )
        self.notes: list[str] = []
        self.fell_back_to_cpu = False
        self.net = _prepared(model, device)

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 3 and x.shape[1] == 1:
            return x.expand(-1, 3, -1, -1)
        if self.in_channels == 1 and x.shape[1] == 3:
            return x.mean(dim=1, keepdim=True)
        return x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, enabled=self.mixed_precision):
            x = self._adapt(x).to(self.device, non_blocking=True)
            if not self.outputs.plain:
                return forward_outputs(self.net, x, self.outputs).cpu()
            logits = map_logits(self.net(x))
        return torch.sigmoid(logits.float()).cpu()

    def _to_cpu(self, exc: BaseException) -> None:
        message = (
            f"Out of memory on {self.device} even with one tile at a time; continuing on the CPU "
            "(slower). Use smaller tiles or close other GPU programs to stay on the GPU."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.notes.append(message)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.device = torch.device("cpu")
        self.net = _prepared(self.model, self.device)
        self.fell_back_to_cpu = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, K, H, W) float32 on the CPU (the ``outputs`` stack when asked)."""
        outputs: list[torch.Tensor] = []
        start = 0
        while start < x.shape[0]:
            chunk = x[start : start + self.batch_size]
            try:
                outputs.append(self._forward(chunk))
                start += chunk.shape[0]
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size = max(1, self.batch_size // 2)
                    self.notes.append(
                        f"Out of memory on {self.device}; retrying with batch size {self.batch_size}."
                    )
                elif self.device.type != "cpu":
                    self._to_cpu(exc)
                else:
                    raise MemoryError(
                        "Out of memory on the CPU with one tile at a time; use geometry 'tiles' with a "
                        "smaller tile_size, or a smaller scale."
                    ) from exc
        return torch.cat(outputs, dim=0)
