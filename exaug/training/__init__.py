"""The reference trainer (ExCon paper, Algorithm 1) and its configuration."""

from .config import METHODS, TrainConfig
from .run import TrainedRun, load_run
from .trainer import Trainer, TrainingDiverged, cosine_factor, describe_methods

__all__ = ["METHODS", "TrainConfig", "TrainedRun", "Trainer", "TrainingDiverged", "cosine_factor", "describe_methods",
           "load_run"]
