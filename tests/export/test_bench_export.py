"""The export benchmark still runs (at a tiny size): a renamed API must not break it silently."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow  # builds, exports and packs a full-size network: ~10 s on 2 cores
def test_export_benchmark_runs_and_reports_both_backends(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_export

    args = argparse.Namespace(size=64, batch=1, threads=1, rounds=1, backbone="resnet50")
    result = bench_export.run(args)
    timings = result["timings_s"]
    fp32 = {"torch engine (fast_model)", "onnxruntime", "onnxruntime (no spin)"}
    assert fp32 <= set(timings) and len(set(timings) - fp32) <= 1  # + the bf16 engine on bf16 CPUs
    assert all(t["min"] > 0 for t in timings.values())
    assert all(timings[k]["max_abs_diff_vs_eager"] < 1e-4 for k in fp32)
    assert result["cpu"]["model"] and "loadavg" in result["load_before"]
    sys.modules.pop("bench_export", None)
