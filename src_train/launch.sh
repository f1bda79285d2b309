#!/usr/bin/env bash
# Train one recipe on one or many GPUs:  src_train/launch.sh src_train/configs/ISIC2018.yaml [NGPUS] [extra madgnet train args]
# With NGPUS > 1 torchrun starts one process per GPU (DDP, NCCL); rank 0 writes checkpoints and logs.
# The batch size in the recipe is per process: divide it by NGPUS to keep the paper's total of 16.
set -euo pipefail
config=${1:?usage: launch.sh CONFIG.yaml [NGPUS] [args...]}
ngpus=${2:-1}
shift $(( $# >= 2 ? 2 : 1 ))
if [ "$ngpus" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node="$ngpus" -m napari_madgnet train --config "$config" "$@"
else
  exec python -m napari_madgnet train --config "$config" "$@"
fi
