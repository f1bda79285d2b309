"""Training and fine-tuning MADGNet (Qt-free): configs, data, targets, losses, engine, DDP.

Public API::

    TrainConfig (.benchmark(), .finetune(), .from_yaml(), .to_yaml())
    iter_train(cfg, data, ...) -> generator of jobs.Progress, returns TrainResult
    train(cfg, data, callback=None, ...) -> TrainResult
    iter_finetune / finetune(image, labels, config=..., from_model=..., out=..., name=...) -> TrainResult
    iter_resume_finetune / resume_finetune(run_dir, image=None, labels=None) -> TrainResult
    iter_continue_finetune / continue_finetune(model, image, labels, regions=..., previous_run=...)
                                          # the annotate-next loop: continue the current model
    describe_result(result) -> str        # how a run ended and what was kept where
    data_from_arrays(image, labels, cfg), data_from_config(cfg) -> TrainData
"""

from napari_madgnet.training.config import AugmentConfig, DataConfig, LossConfig, TrainConfig
from napari_madgnet.training.continued import (
    Region,
    continue_config,
    continue_finetune,
    iter_continue_finetune,
)
from napari_madgnet.training.data import DataError
from napari_madgnet.training.engine import TrainData, TrainingError, TrainResult, iter_train, train
from napari_madgnet.training.finetune import (
    data_from_arrays,
    data_from_config,
    describe_result,
    finetune,
    iter_finetune,
    iter_resume_finetune,
    resume_finetune,
)

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "DataError",
    "LossConfig",
    "Region",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingError",
    "continue_config",
    "continue_finetune",
    "data_from_arrays",
    "data_from_config",
    "describe_result",
    "finetune",
    "iter_continue_finetune",
    "iter_finetune",
    "iter_resume_finetune",
    "iter_train",
    "resume_finetune",
    "train",
]
