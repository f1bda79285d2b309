#!/usr/bin/env bash
# The main job on the bundled sample: fine-tune MADGNet on the top half of the nuclei image,
# segment the bottom half with the new model, print Dice against the annotation, and write the
# mask, an overlay PNG and the model to out/demo/. Headless: no Qt is installed. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh headless
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$PY" -m napari_madgnet.demo --out out/demo "$@"
