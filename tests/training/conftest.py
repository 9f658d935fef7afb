"""Tiny, fast training configurations on the built-in synthetic data."""

from __future__ import annotations

from typing import Any

import pytest

from exaug.training import TrainConfig

TINY: dict[str, Any] = dict(
    dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=2, batch_size=16, lr=0.05,
    classifier_lr=0.05, train_samples=48, eval_samples=32, exp_start_epoch=1, quiet=True, device="cpu", seed=3,
)


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(**overrides) -> TrainConfig`` writing into a fresh folder under ``tmp_path``."""
    counter = iter(range(1000))

    def make(**overrides: Any) -> TrainConfig:
        values = {**TINY, "out": str(tmp_path / f"run{next(counter)}"), **overrides}
        return TrainConfig(**values)

    return make
