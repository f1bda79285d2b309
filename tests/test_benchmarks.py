"""The benchmark scripts still run, at tiny sizes: an API renamed in the package must not leave a
benchmark that fails only when someone needs its figures (it happened once)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_importable(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_model_benchmark_compares_the_released_computation_with_ours() -> None:
    import bench_model

    args = argparse.Namespace(backbone="resnet50", size=64, repeats=1, compile=False)
    result = bench_model.forward_comparison(args)
    variants = result["variants"]
    assert {"released-style", bench_model.ENGINE_FP32, bench_model.ENGINE_BF16} <= set(variants)
    for name, v in variants.items():  # fp32 paths agree to rounding, bf16 to its 8-bit mantissa
        assert v["max_rel_error_vs_released_style"] < (0.3 if "bf16" in name else 1e-3), name
    assert result["engine_precision"] in ("fp32", "bf16")
    assert result["engine_variant"] in variants and result["engine_speedup_over_released_median"] > 0


def test_tile_benchmark_chooses_the_largest_tile_within_the_tolerance() -> None:
    import bench_tiles

    assert bench_tiles.choose_default({1: 0.90, 2: 0.902, 4: 0.897, 8: 0.80}) == 4
    assert bench_tiles.choose_default({1: 0.90, 2: 0.85, 4: 0.89, 8: 0.80}) == 1
    assert bench_tiles.tile_sizes(64, (256, 512)) == {"1x": 64, "2x": 128, "4x": 256, "8x": 512, "whole": 512}


def test_inference_benchmark_overhead_case_runs() -> None:
    import bench_inference

    threads = torch.get_num_threads()
    row = bench_inference.run_case("overhead", "cpu", threads, "resnet50", "fp32", repeats=1, size=64)
    assert row["precision"] == "fp32" and row["engine_speedup_over_released"] > 0
    assert {"bare forward sigmoid(net(x))", "segment() (resize, one forward)"} <= set(row["paths"])


def test_benchmark_results_are_kept_per_cpu_model() -> None:
    import machine

    info = machine.describe("cpu")
    assert info["cpu"]["model"] and "auto_precision" in info
    path = machine.result_path("inference", info)
    assert path.parent == machine.RESULTS and info["cpu_slug"] in path.name
    assert info["cpu"]["model"] in machine.headline(info)


@pytest.mark.parametrize("loop", ["plain_loop", "engine_loop"])
def test_training_benchmark_loops_run(loop: str) -> None:
    import bench_training

    result = getattr(bench_training, loop)(2, 64, 1, torch.device("cpu"))
    assert result["images_per_s"] > 0 and result["peak_mb"] > 0


def test_inference_benchmark_case_runs() -> None:
    import bench_inference

    result = bench_inference.run_case("96x96", "cpu", torch.get_num_threads(), "resnet50")
    assert result["megapixels_per_s"] > 0 and result["geometry"] == "resize"


def test_plain_loop_loss_is_the_engine_loss() -> None:
    """The baseline computes the same numbers as the engine, only in the plain way."""
    import bench_training

    from napari_madgnet.training import LossConfig
    from napari_madgnet.training.losses import esdm_loss

    torch.manual_seed(0)
    mask = (torch.rand(2, 1, 70, 90) > 0.6).float()
    batch = {
        "mask": mask,
        "valid": torch.ones_like(mask),
        "boundary": (torch.rand_like(mask) > 0.9).float(),
        "distance": torch.rand_like(mask),
    }
    stages = [tuple(torch.randn(2, 1, 70, 90) for _ in range(3)) for _ in range(4)]
    engine, _ = esdm_loss(stages, batch, LossConfig())
    torch.testing.assert_close(engine, bench_training.plain_loss(stages, batch), rtol=1e-5, atol=1e-6)


def test_heads_benchmarks_import_and_score_as_documented() -> None:
    """The E-SDM heads benchmarks need the demo's model; their imports and scores are checked here."""
    import bench_active_learning  # noqa: F401
    import bench_instances  # noqa: F401
    import bench_uncertainty  # noqa: F401
    import heads_common
    import numpy as np

    score = np.array([0.1, 0.4, 0.35, 0.8])
    error = np.array([False, False, True, True])
    assert heads_common.auroc(score, error) == 0.75  # 3 of the 4 (error, correct) pairs ordered right
    assert np.isnan(heads_common.auroc(score, np.ones(4, bool)))  # no correct pixel: undefined
    top = heads_common.coverage(score, error, top=0.25)  # the single most uncertain pixel is an error
    assert top == {"error_coverage": 0.5, "error_rate_in_top": 1.0, "error_rate_overall": 0.5}


def test_gpu_check_script_plans_every_step_under_one_folder(tmp_path) -> None:
    """benchmarks/gpu_check.sh cannot run without a GPU; its dry run checks syntax and flow."""
    import subprocess

    script = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(script), "--dry-run", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in (out / "summary.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["env", "pytest", "model", "inference"]
    assert all(r[1] == "0" for r in rows)
    commands = {r[0]: r[3] for r in rows}
    assert "-m gpu" in commands["pytest"] and str(out) in commands["pytest"]
    for k in ("model", "inference"):
        assert "--device cuda" in commands[k] and f"--out {out}" in commands[k]


@pytest.mark.slow  # trains resnest50 for 2 steps and segments 6 planes: about 30 s on 2 quiet cores
def test_sparse_planes_benchmark_trial_runs(tmp_path) -> None:
    """Issue 18's benchmark: a 6-plane stack, 3 annotated, 2 steps; the row holds both floors."""
    import bench_sparse_planes

    (trial,) = bench_sparse_planes.trial_set("smoke")
    row = bench_sparse_planes.run_trial(trial, 0, planes=6, side=64, work=tmp_path)
    assert row["annotated_planes"] == [1, 2, 4] and row["heldout_planes"] == ["Z 2"]
    assert 0 <= row["dice_unannotated"] <= 1 and 0 < row["otsu_plane"] <= 1 and 0 < row["otsu_fixed"] <= 1
    assert row["margin"] == row["dice_unannotated"] - max(row["otsu_plane"], row["otsu_fixed"])
