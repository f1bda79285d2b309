"""Run under torchrun with 2 CPU processes: train two steps, write each rank's parameter checksum."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)


def main(out: str) -> None:
    from napari_madgnet.training import TrainConfig, data_from_arrays, train
    from napari_madgnet.training.distributed import cleanup, current

    rng = np.random.default_rng(0)
    labels = np.zeros((96, 96), np.uint16)
    labels[20:40, 30:60] = 1
    labels[60:80, 10:30] = 2
    image = (rng.normal(40, 10, labels.shape) + 150 * (labels > 0)).clip(0, 255).astype(np.uint8)
    cfg = TrainConfig.finetune(
        init="scratch",
        backbone="resnet50",
        patch_size=64,
        batch_size=1,
        max_steps=2,
        steps_per_epoch=2,
        device="cpu",
    )
    result = train(cfg, data_from_arrays(image, labels, cfg), out_dir=os.path.join(out, "run"))
    info = current()
    params = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    with open(os.path.join(out, f"rank{info.rank}.json"), "w") as fh:
        json.dump(
            {
                "rank": info.rank,
                "world": info.world,
                "sum": float(params.double().sum()),
                "first": params[:20].tolist(),
                "losses": [r["loss"] for r in result.history],
            },
            fh,
        )
    cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
