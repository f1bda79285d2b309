"""Running the network on batches, surviving out-of-memory.

A MADGNet runs as its fast inference copy (``fast_model``: BatchNorm folded, convolutions
packed for oneDNN on the CPU); the caller's model is neither modified nor moved. The copy is
made once per model and device and kept beside the model (``prepared``: a weak cache, so it goes
when the model goes, and it is remade when the model's weights change), so calling ``segment``
image after image with the same model neither copies the network nor packs its weights again.
Callers that hold a copy already (``fast_model``) can pass that. Other networks run as they are.

``precision`` (``device.resolve_precision``): fp32, or bf16 autocast on CPUs with native bf16
(the packed convolutions then run in bf16), or CUDA autocast (bf16/fp16) with channels_last
activations. ``backend="onnxruntime"`` runs the model's ONNX export in ONNX Runtime on the CPU
(``export.runtime.OnnxRuntimeModel``, fp32 only).

On an out-of-memory error the batch is split in halves and retried; when even one tile does not
fit, the model moves to the CPU with a visible warning. The engine forwards the runner's
``notes`` as progress messages so the user sees why a run slowed down.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch

from napari_madgnet.device import BACKENDS, precision_autocast, resolve_precision
from napari_madgnet.errors import UserError
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


#: model -> {(backend, device, channels_last, threads): (weights fingerprint, prepared network)}.
#: Weak keys: an entry lives as long as the caller's model; the prepared copy does not refer back.
_PREPARED: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[Any, ...], tuple[int, Any]]] = (
    weakref.WeakKeyDictionary()
)


def weights_fingerprint(model: torch.nn.Module) -> int:
    """Changes when any parameter or buffer is replaced or changed in place (optimiser steps,
    ``load_state_dict``): their storage addresses and version counters. About 0.1 ms."""
    tensors = [*model.parameters(), *model.buffers()]
    return hash(tuple((t.data_ptr(), t._version) for t in tensors))


def _on(net: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """``net`` moved to ``device`` (NHWC weights when ``channels_last``) unless it is there already:
    even a no-op ``Module.to`` walks every tensor."""
    conv = next((m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
    first = conv if conv is not None else next(net.parameters(), None)
    if first is None:
        return net
    nhwc = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    if first.device != device or (channels_last and not nhwc):
        net = net.to(device, memory_format=torch.channels_last) if channels_last else net.to(device)
    return net


def prepared(
    model: torch.nn.Module,
    device: torch.device,
    *,
    channels_last: bool = False,
    backend: str = "torch",
    cache: bool = True,
) -> Any:
    """The network the runner calls for ``model`` on ``device``, made once and cached.

    Torch: a MADGNet's inference copy (``fast_model``) in eval mode on ``device`` (an inference
    copy passed in is used itself, moved if needed); other networks in eval mode on ``device``.
    ``channels_last`` (CUDA autocast) converts the copy's weights to NHWC. ONNX Runtime: an
    ``OnnxRuntimeModel`` of the plain MADGNet (CPU only). ``cache=False`` (training's validation,
    whose weights change between calls) neither reads nor fills the cache.
    """
    threads = torch.get_num_threads() if backend == "onnxruntime" else None
    key = (backend, str(device), channels_last, threads)
    folded = getattr(model, "bn_folded", False)
    fingerprint = weights_fingerprint(model) if cache and not folded else 0
    entries = _PREPARED.get(model) if cache else None
    if entries is not None and key in entries and entries[key][0] == fingerprint:
        net = entries[key][1]
        return _on(net, device, channels_last) if backend == "torch" else net
    if backend == "onnxruntime":
        net = _onnxruntime(model)
    else:
        net = _on(fast_model(model).eval(), device, channels_last)
    if cache and not folded:  # an inference copy passed in is its own cache
        _PREPARED.setdefault(model, {})[key] = (fingerprint, net)
    return net


def _onnxruntime(model: torch.nn.Module) -> Any:
    from napari_madgnet.export.common import MissingDependencyError
    from napari_madgnet.export.runtime import OnnxRuntimeModel

    if not isinstance(model, MADGNet) or getattr(model, "bn_folded", False):
        raise UserError(
            "backend 'onnxruntime' needs the plain MADGNet (a checkpoint or registered name), not "
            f"{'an inference copy' if isinstance(model, MADGNet) else type(model).__name__}; "
            "use backend 'torch'."
        )
    try:
        return OnnxRuntimeModel(model, threads=torch.get_num_threads())
    except MissingDependencyError as exc:
        raise UserError(f"{exc} (or use backend 'torch')") from None


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
        precision: str = "auto",
        backend: str = "torch",
        in_channels: int | None = None,
        outputs: OutputSpec | None = None,
        cache: bool = True,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, int(batch_size)) if batch_size else default_batch_size(device)
        self.mixed_precision = mixed_precision
        self.requested_precision = precision
        self.in_channels = in_channels
        self.outputs = outputs or OutputSpec()
        self.cache = cache
        if backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
        self.backend = backend
        if self.outputs.needs_stages and not hasattr(model, "forward_stages"):
            raise ValueError(
                f"{type(model).__name__} has no forward_stages: the distance/boundary heads and the stage "
                "uncertainty need a MADGNet; ask for the map only (no watershed instances, no uncertainty)."
            )
        if backend == "onnxruntime":
            if device.type != "cpu":
                raise UserError(
                    f"backend 'onnxruntime' runs on the CPU; got device {device}. Use device 'cpu'."
                )
            if not self.outputs.plain:
                raise UserError(
                    "backend 'onnxruntime' computes the segmentation map only: no distance/boundary maps, "
                    "flip TTA or uncertainty; use backend 'torch' for those."
                )
            if precision == "bf16":
                raise UserError("backend 'onnxruntime' runs in fp32; use precision 'auto' or 'fp32'.")
        self.notes: list[str] = []
        self.fell_back_to_cpu = False
        self._prepare()

    def _prepare(self) -> None:
        onnx = self.backend == "onnxruntime"
        self.precision = "fp32" if onnx else resolve_precision(
            self.requested_precision, self.device, self.mixed_precision
        )
        # NHWC activations: for GPU autocast (tensor cores), and on the CPU, where oneDNN's
        # convolutions and the elementwise ops between them run faster on NHWC (AMD Zen 4, bf16:
        # 1.17x NCHW with packed weights; benchmarks/bench_model.py).
        self.channels_last = self.device.type == "cpu" or self.precision != "fp32"
        self.net = prepared(
            self.model, self.device, channels_last=self.channels_last, backend=self.backend, cache=self.cache
        )

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 3 and x.shape[1] == 1:
            return x.expand(-1, 3, -1, -1)
        if self.in_channels == 1 and x.shape[1] == 3:
            return x.mean(dim=1, keepdim=True)
        return x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "onnxruntime":
            return torch.sigmoid(self.net(self._adapt(x)).float())
        with torch.inference_mode(), precision_autocast(self.device, self.precision):
            x = self._adapt(x).to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if not self.outputs.plain:
                return forward_outputs(self.net, x, self.outputs).float().cpu()
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
        self._prepare()
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
