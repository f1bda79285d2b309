"""The engine with the real MADGNet: dtypes, layouts, lazy inputs, cancel, OOM, classes, provenance."""

from __future__ import annotations

import warnings
import weakref

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from inference_helpers import CountingModel, rng_image

from napari_madgnet.inference import (
    InferenceConfig,
    PostprocessConfig,
    SegmentationResult,
    choose_geometry,
    fast_model,
    iter_segment,
    segment,
)
from napari_madgnet.jobs import Cancelled, CancelToken, Progress

DTYPES = [
    bool,
    np.uint8,
    np.uint16,
    np.uint32,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
]


@pytest.fixture(scope="module")
def counting(madgnet):
    return CountingModel(madgnet)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype(madgnet, dtype):
    img = rng_image((40, 48), dtype)
    res = segment(img, madgnet)
    assert res.probabilities.shape == (1, 40, 48) and res.probabilities.dtype == np.float32
    assert res.mask.shape == (40, 48) and res.mask.dtype == np.uint8
    assert np.isfinite(res.probabilities).all() and set(np.unique(res.mask)) <= {0, 1}
    norm = res.provenance["resolved"]["normalization"]
    # the checkpoint says scale255; data that is not 8-bit gets a robust range instead
    assert norm["method"] == ("scale255" if np.dtype(dtype) in (np.uint8, bool) else "percentile")


@pytest.mark.parametrize(
    ("shape", "axes", "channel", "out_shape", "planes"),
    [
        ((40, 48, 3), None, None, (40, 48), 1),  # RGB
        ((40, 48, 4), None, None, (40, 48), 1),  # RGBA, alpha dropped
        ((3, 40, 48), "CYX", None, (40, 48), 1),
        ((5, 40, 48), "CYX", 2, (40, 48), 1),  # multichannel, one chosen
        ((40, 48, 6), "YXC", 4, (40, 48), 1),
        ((3, 40, 48), None, None, (3, 40, 48), 3),  # Z stack
        ((2, 2, 40, 48), "TZYX", None, (2, 2, 40, 48), 4),
        ((2, 40, 48, 3), "TYXC", None, (2, 40, 48), 2),
    ],
)
def test_layouts(counting, shape, axes, channel, out_shape, planes):
    img = rng_image(shape, np.uint8)
    counting.calls.clear()
    res = segment(img, counting, InferenceConfig(axes=axes, channel=channel, batch_size=8))
    assert res.mask.shape == out_shape and res.probabilities.shape == (1, *out_shape)
    assert sum(counting.calls) == planes and len(counting.calls) == 1  # planes batched together
    assert res.axes == (axes or "").replace("C", "") or len(res.axes) == len(out_shape)


def test_stack_planes_are_independent_and_ordered(madgnet):
    a, b = rng_image((40, 48), np.uint8, seed=1), rng_image((40, 48), np.uint8, seed=2)
    stack = segment(np.stack([a, b, a]), madgnet, InferenceConfig(normalization="scale255"))
    single = segment(b, madgnet)
    np.testing.assert_allclose(stack.probabilities[0, 1], single.probabilities[0], atol=1e-5)
    np.testing.assert_allclose(stack.probabilities[0, 0], stack.probabilities[0, 2], atol=1e-5)


class ReadCounter:
    """An array-like that records what is read and refuses to be read whole."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        out = self.data[key]
        assert out.size < self.data.size, "the whole stack was read at once"
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("np.asarray on the whole stack")


def test_dask_and_zarr_inputs(madgnet, tmp_path):
    stack = rng_image((3, 40, 48), np.uint16)
    ref = segment(stack, madgnet)
    darr = da.from_array(stack, chunks=(1, 40, 48))
    z = zarr.open_array(
        str(tmp_path / "s.zarr"), mode="w", shape=stack.shape, chunks=(1, 40, 48), dtype="uint16"
    )
    z[...] = stack
    for arr in (darr, zarr.open_array(str(tmp_path / "s.zarr"), mode="r")):
        res = segment(arr, madgnet)
        np.testing.assert_allclose(res.probabilities, ref.probabilities, atol=1e-5)
        np.testing.assert_array_equal(res.mask, ref.mask)


def test_stack_is_read_plane_by_plane(madgnet, monkeypatch):
    """A stack too big for memory: the range is fitted on a strided sample, planes are read one by one."""
    import napari_madgnet.preprocess as preprocess

    monkeypatch.setattr(preprocess, "_FIT_SAMPLE", 1000)  # pretend 3 x 40 x 48 is huge
    stack = rng_image((3, 40, 48), np.uint16)
    lazy = ReadCounter(stack)
    res = segment(lazy, madgnet)
    np.testing.assert_array_equal(res.mask, segment(stack, madgnet).mask)
    plane_reads = [k for k in lazy.reads if isinstance(k, tuple) and isinstance(k[0], int)]
    assert len(plane_reads) == 3 and len(lazy.reads) == 4  # 1 strided sample + 3 planes


def test_nan_and_inf_are_not_propagated(madgnet):
    img = rng_image((40, 48), np.float32)
    img[5:10, 5:10] = np.nan
    img[20, 20] = np.inf
    img[21, 21] = -np.inf
    res = segment(img, madgnet)
    assert np.isfinite(res.probabilities).all()


@pytest.mark.parametrize(
    ("image", "kwargs", "words"),
    [
        (np.zeros((0, 0), np.uint8), {}, "empty"),
        (np.zeros((4, 0, 5), np.uint8), {}, "empty"),
        (np.full((40, 48), np.nan, np.float32), {}, "no finite values"),
        (np.full((40, 48), np.nan, np.float32), {"normalization": "none"}, "no finite values"),
        (np.zeros((40, 48, 7), np.uint8), {"axes": "YXC"}, "7 channels"),
        (np.zeros((40, 48), np.complex64), {}, "dtype complex64"),
        (np.zeros((40, 48), np.uint8), {"axes": "XY"}, "Y and X must be the last"),
    ],
)
def test_bad_input_is_a_clear_error(counting, image, kwargs, words):
    counting.calls.clear()
    with pytest.raises(ValueError, match=words):
        segment(image, counting, InferenceConfig(**kwargs))
    assert counting.calls == []


def test_unknown_axes_string_is_refused_before_any_work(counting):
    counting.calls.clear()
    with pytest.raises(ValueError, match="Unknown axes 'YXQ'"):
        segment(np.zeros((40, 48, 2), np.uint8), counting, InferenceConfig(axes="YXQ"))
    assert counting.calls == []


def test_iter_segment_yields_progress_and_returns_result(madgnet):
    gen = iter_segment(rng_image((3, 40, 48)), madgnet, InferenceConfig(batch_size=1))
    reports = []
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert isinstance(result, SegmentationResult)
    assert all(isinstance(r, Progress) for r in reports)
    fractions = [r.fraction for r in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("Plane 2/3" in r.message for r in reports)


def test_cancel_mid_run_returns_nothing_and_writes_nothing(counting, tmp_path):
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p)
        if "tile 2/" in p.message:
            token.cancel()

    store = tmp_path / "out.zarr"
    counting.calls.clear()
    cfg = InferenceConfig(geometry="tiles", tile_size=32, overlap=0.0, batch_size=1, output_zarr=str(store))
    with pytest.raises(Cancelled):
        segment(rng_image((64, 64)), counting, cfg, progress=on_progress, cancel=token)
    assert len(counting.calls) == 2  # stopped after the second of four tiles
    assert list(tmp_path.iterdir()) == []  # no store, no temporary left behind


def test_zarr_output_store(madgnet, tmp_path):
    store = tmp_path / "res.zarr"
    cfg = InferenceConfig(output_zarr=str(store), postprocess=PostprocessConfig(instances=True))
    res = segment(rng_image((2, 40, 48)), madgnet, cfg)
    assert isinstance(res.probabilities, zarr.Array) and res.mask.shape == (2, 40, 48)
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["axes"] == "ZYX" and "provenance" in group.attrs
    assert np.asarray(group["mask"]).dtype == np.int32
    with pytest.raises(FileExistsError, match="overwrite"):
        segment(rng_image((2, 40, 48)), madgnet, cfg)


class OOMModel(torch.nn.Module):
    """The real model behind a fake accelerator: batches above ``max_batch`` and any tensor off
    the CPU raise torch.OutOfMemoryError, as a full GPU would."""

    def __init__(self, inner, max_batch):
        super().__init__()
        self.inner, self.max_batch = inner, max_batch
        self.checkpoint_info = inner.checkpoint_info
        self.moved_to = []
        self.calls = []

    def to(self, device, *args, **kwargs):  # never really move the shared weights
        self.moved_to.append(torch.device(device).type)
        return self

    def forward(self, x):
        self.calls.append((x.device.type, x.shape[0]))
        if x.device.type != "cpu" or x.shape[0] > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_oom_retries_with_smaller_batches(madgnet):
    model = OOMModel(madgnet, max_batch=2)
    reports = []
    res = segment(rng_image((5, 40, 48)), model, InferenceConfig(batch_size=8), progress=reports.append)
    assert res.mask.shape == (5, 40, 48)
    assert [b for _, b in model.calls] == [5, 4, 2, 2, 1]  # 5 and 4 fail, then pairs
    assert any("retrying with batch size 2" in r.message for r in reports)


def test_oom_falls_back_to_cpu_with_a_warning(madgnet, monkeypatch):
    import napari_madgnet.inference.engine as engine

    monkeypatch.setattr(engine, "resolve_device", lambda name: torch.device("meta"))
    model = OOMModel(madgnet, max_batch=1)
    reports = []
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        res = segment(rng_image((2, 40, 48)), model, InferenceConfig(batch_size=2), progress=reports.append)
    # moved to the accelerator once; its weights are on the CPU already, so the fallback runs them
    # there without another move (a no-op Module.to walks every tensor)
    assert model.moved_to == ["meta"] and model.calls[-1] == ("cpu", 1)
    assert res.provenance["resolved"]["device"] == "cpu" and res.provenance["resolved"]["fell_back_to_cpu"]
    assert any(r.details.get("warning") and "CPU" in r.message for r in reports)


def test_several_classes_paint_higher_ids_over_lower(monkeypatch):
    from napari_madgnet.model import MADGNet

    torch.manual_seed(0)
    model = MADGNet(backbone="resnet50", num_classes=3).eval()
    model.checkpoint_info = {"preprocessing": {"input_size": 32}}
    res = segment(
        rng_image((40, 48, 3)), model, InferenceConfig(postprocess=PostprocessConfig(threshold=0.5))
    )
    assert res.probabilities.shape == (3, 40, 48) and res.n_classes == 3
    p = res.probabilities
    expected = np.zeros((40, 48), np.uint8)
    for k in range(3):
        expected[p[k] > 0.5] = k + 1
    np.testing.assert_array_equal(res.mask, expected)


def test_repostprocess_does_not_run_the_network(counting):
    res = segment(rng_image((40, 48)), counting)
    n = len(counting.calls)
    low = res.repostprocess(PostprocessConfig(threshold=0.0))
    high = res.repostprocess(PostprocessConfig(threshold=1.0))
    assert len(counting.calls) == n
    assert low.mask.all() and not high.mask.any()
    assert low.probabilities is res.probabilities
    assert low.provenance["config"]["postprocess"]["threshold"] == 0.0


def test_provenance_names_model_file_hash_and_settings(checkpoint, models_home):
    from napari_madgnet import hashing as prov_mod
    from napari_madgnet.inference import file_sha256

    prov_mod._memory.clear()  # other tests hashed this file already; models_home gave a fresh disk cache
    calls = []
    real = prov_mod.hashlib.sha256
    monkey = pytest.MonkeyPatch()
    monkey.setattr(prov_mod.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    try:
        res = segment(rng_image((40, 48)), str(checkpoint), InferenceConfig(device="cpu"))
        again = file_sha256(checkpoint)
    finally:
        monkey.undo()
    model = res.provenance["model"]
    assert model["sha256"] == again and len(again) == 64
    assert len(calls) == 1  # hashed once, then cached by path + mtime
    assert model["path"] == str(checkpoint) and model["name"] == "tiny-madgnet"
    assert model["preprocessing"]["input_size"] == 32
    resolved = res.provenance["resolved"]
    assert resolved["device"] == "cpu" and resolved["geometry"] == "resize" and resolved["input_size"] == 32
    assert res.provenance["software"]["version"]
    assert res.provenance["config"] == InferenceConfig(device="cpu").to_dict()


def test_auto_geometry_rule():
    cfg = InferenceConfig()
    assert choose_geometry(cfg, (512, 512), 352) == "resize"
    assert choose_geometry(cfg, (528, 300), 352) == "resize"
    assert choose_geometry(cfg, (529, 300), 352) == "tiles"
    assert choose_geometry(InferenceConfig(geometry="tiles"), (64, 64), 352) == "tiles"


def test_patch_trained_models_are_tiled_at_their_patch_size():
    """A fine-tuned model names a tile_size and no input_size: auto tiles even small images."""
    patch_trained = {"tile_size": 64, "input_size": None, "normalization": "auto"}
    assert choose_geometry(InferenceConfig(), (128, 128), 352, patch_trained) == "tiles"
    assert choose_geometry(InferenceConfig(geometry="resize"), (128, 128), 352, patch_trained) == "resize"
    released = {"input_size": 352, "normalization": "scale255"}
    assert choose_geometry(InferenceConfig(), (128, 128), 352, released) == "resize"


def test_tiles_at_a_chosen_scale_keep_the_input_shape(counting):
    counting.calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = segment(
            rng_image((150, 130)), counting, InferenceConfig(geometry="tiles", tile_size=64, scale=0.5)
        )
    assert res.mask.shape == (150, 130)
    assert sum(counting.calls) == 4  # 75 x 65 at half scale -> 2 x 2 tiles of 64


def test_a_madgnet_runs_as_its_fast_copy_and_is_left_as_it_was(madgnet, monkeypatch):
    """The engine runs the folded, packed copy (its numbers: tests/model/test_optimize.py), made
    once per model and kept beside it until the model's weights change; the caller's model keeps
    its mode, device and weights, so a model being fine-tuned in napari is not disturbed."""
    from napari_madgnet.inference import runner as runner_mod

    made = []
    original = runner_mod.inference_copy
    monkeypatch.setattr(runner_mod, "inference_copy", lambda m: made.append(original(m)) or made[-1])
    runner_mod._PREPARED.pop(madgnet, None)  # as if this model had just been loaded
    madgnet.train()
    before = {k: v.clone() for k, v in madgnet.state_dict().items()}
    image = rng_image((40, 48), np.uint8)
    try:
        res = segment(image, madgnet, InferenceConfig(device="cpu"))
        assert madgnet.training
        again = segment(image, madgnet, InferenceConfig(device="cpu"))
    finally:
        madgnet.eval()
    assert len(made) == 1 and not made[0].training  # the second call reused the copy
    np.testing.assert_array_equal(again.mask, res.mask)
    assert all(torch.equal(v, madgnet.state_dict()[k]) for k, v in before.items())
    assert res.mask.shape == (40, 48) and res.provenance["resolved"]["device"] == "cpu"
    with torch.no_grad():  # an optimiser step changes the weights in place: a new copy
        next(madgnet.parameters()).mul_(1.0)
    segment(image, madgnet, InferenceConfig(device="cpu"))
    assert len(made) == 2
    # A caller may hold the copy itself (fast_model) and pass that: no copy per image either.
    fast = fast_model(madgnet)
    assert fast is not madgnet and fast_model(fast) is fast and len(made) == 3
    again = segment(image, fast, InferenceConfig(device="cpu"))
    assert len(made) == 3 and again.provenance["model"] == res.provenance["model"]


def test_the_prepared_copy_is_packed_once_and_dies_with_its_model():
    """Per-call work the issue found (174 weight reorders per segment() call) is gone: a second
    call reorders no weight, and the cache holds no model that the caller dropped."""
    import gc

    from napari_madgnet.inference import runner as runner_mod
    from napari_madgnet.model import MADGNet

    torch.manual_seed(0)
    model = MADGNet(backbone="resnet50").eval()
    image = rng_image((64, 64), np.uint8)
    config = InferenceConfig(device="cpu", precision="fp32")
    reorders = []
    real = torch.ops.mkldnn

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def _reorder_convolution_weight(self, *args):
            reorders.append(1)
            return real._reorder_convolution_weight(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.ops, "mkldnn", Counting())
        segment(image, model, config)  # makes and packs the copy
        first = len(reorders)
        segment(image, model, config)
    assert first > 50 and len(reorders) == first  # the second call packs nothing
    assert model in runner_mod._PREPARED
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_cpu_runs_one_tile_at_a_time_unless_told(madgnet):
    from napari_madgnet.inference.runner import Runner

    assert Runner(madgnet, torch.device("cpu")).batch_size == 1
    assert Runner(madgnet, torch.device("cpu"), batch_size=4).batch_size == 4
    assert Runner(madgnet, torch.device("meta")).batch_size == 8
