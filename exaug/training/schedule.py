"""Learning-rate schedule and seeding of a training run.

Every stage of every epoch reseeds all generators from :func:`stage_seed` ``(seed, epoch, stage, rank)``, so a
run resumed from ``last.pt`` produces the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

__all__ = ["cosine_factor", "seed_everything", "stage_seed"]


def cosine_factor(epoch: int, total: int, warmup: int = 0, min_factor: float = 1e-3) -> float:
    """Learning-rate multiplier of ``epoch``: linear warm-up, then cosine from 1 to ``min_factor``.

    Example:
        >>> [round(cosine_factor(e, 4, min_factor=0.0), 3) for e in range(5)]
        [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if epoch < warmup:
        return (epoch + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (epoch - warmup) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, epoch: int, stage: int, rank: int = 0) -> int:
    """The seed of one stage (``0`` encoder / joint, ``1`` classifier) of one epoch on one rank.

    Example:
        >>> stage_seed(0, 0, 0), stage_seed(0, 0, 1), stage_seed(0, 1, 0)
        (0, 1009, 7063)
    """
    return ((seed * 1_000_003 + epoch) * 7 + stage) * 1009 + rank
