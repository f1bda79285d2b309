#!/usr/bin/env bash
# One GPU check for a lent CUDA machine, in under 8 minutes, everything under one results folder.
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]        # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --dry-run [DIR]      # anywhere: checks the plan, runs nothing heavy
#                                                     # (also MADGNET_GPU_CHECK_DRY_RUN=1)
#
# RESULTS_DIR defaults to $OUT/gpu_check when $OUT is set (the device runner's folder that comes
# back), else benchmarks/results/gpu_check-<time>. It installs nothing: a lent machine has no
# network, and the repository is imported from this checkout (PYTHONPATH), so only a Python with
# a CUDA build of torch (and the test extra: pytest, numpy, scipy, scikit-image, tifffile, zarr)
# must be there; PYTHON=... picks the interpreter. Steps (each under its own time limit; a failing
# step is recorded and the next one runs):
#   env        nvidia-smi, torch and CUDA versions, the CPU                          (20 s)
#   pytest     pytest -m gpu: the GPU-marked tests                                   (150 s)
#   model      bench_model.py --device cuda --quick: fp32/bf16/fp16/channels_last    (150 s)
#   inference  bench_inference.py --device cuda: overhead, 1024^2, 2048^2, batching  (130 s)
# Written: env.txt, pytest-gpu.txt, pytest-gpu.xml, bench_model.txt, bench_inference.txt, the
# benchmarks' JSON (bench_model-cuda-<gpu>.json, inference-cuda-<gpu>.json) and summary.tsv
# (step, exit status, seconds). Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail

DRY_RUN="${MADGNET_GPU_CHECK_DRY_RUN:-0}"
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${1:-}" ]]; then
    RESULTS="$1"
elif [[ -n "${OUT:-}" ]]; then
    RESULTS="$OUT/gpu_check"
else
    RESULTS="$ROOT/benchmarks/results/gpu_check-$(date +%Y%m%d-%H%M%S)"
fi
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
PYTHON="${PYTHON:-python3}"
if [[ -x "$ROOT/.venv/bin/python" && -z "${PYTHON_SET_BY_USER:-}" && "$PYTHON" == "python3" ]]; then
    PYTHON="$ROOT/.venv/bin/python"  # a carried virtual environment, if any
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
export MADGNET_CACHE_DIR="$RESULTS/cache" MADGNET_MODELS_DIR="$RESULTS/models"
SUMMARY="$RESULTS/summary.tsv"
printf 'step\tstatus\tseconds\tcommand\n' > "$SUMMARY"
FAILED=0

step() {  # step NAME SECONDS LOG COMMAND...: run COMMAND with a time limit, output to LOG
    local name="$1" limit="$2" log="$3"
    shift 3
    local start end status
    start=$(date +%s)
    if [[ "$DRY_RUN" == "1" ]]; then
        echo "[dry-run] $name (limit ${limit}s): $*" | tee "$RESULTS/$log"
        status=0
    else
        echo "== $name (limit ${limit}s): $*"
        timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$log" 2>&1
        status=$?
        tail -n 25 "$RESULTS/$log"
    fi
    end=$(date +%s)
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((end - start))" "$*" >> "$SUMMARY"
    if [[ "$status" != "0" ]]; then
        echo "!! $name failed (exit $status; 124 = time limit); see $RESULTS/$log"
        FAILED=1
    fi
}

cd "$ROOT" || exit 1
step env 20 env.txt bash -c "nvidia-smi; lscpu | head -20; \"$PYTHON\" -c 'import torch; \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available()); \
print(torch.cuda.get_device_name() if torch.cuda.is_available() else \"no CUDA device\")'"
step pytest 150 pytest-gpu.txt "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider -rs \
    --junitxml="$RESULTS/pytest-gpu.xml" tests
step model 150 bench_model.txt "$PYTHON" benchmarks/bench_model.py --device cuda --quick --repeats 6 \
    --out "$RESULTS"
step inference 130 bench_inference.txt "$PYTHON" benchmarks/bench_inference.py --device cuda \
    --cases overhead 1024x1024 2048x2048 batching --repeats 5 --out "$RESULTS"

echo "results in $RESULTS"
cat "$SUMMARY"
exit "$FAILED"
