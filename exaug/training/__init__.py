"""The reference trainer (ExCon paper, Algorithm 1 and its baselines), its configuration and training methods as
plugins (:mod:`exaug.training.methods`)."""

from .config import TrainConfig
from .methods import (
    METHODS,
    TrainingMethod,
    create_method,
    describe_methods,
    is_method,
    list_methods,
    register_method,
    unregister_method,
)
from .run import TrainedRun, load_run
from .trainer import CHECKPOINT_KEYS, Trainer, TrainingDiverged, cosine_factor

__all__ = ["CHECKPOINT_KEYS", "METHODS", "TrainConfig", "TrainedRun", "Trainer", "TrainingDiverged", "TrainingMethod",
           "cosine_factor", "create_method", "describe_methods", "is_method", "list_methods", "load_run",
           "register_method", "unregister_method"]
