"""Small models for the masking tests: fast, seeded, with BatchNorm so isolation is exercised."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class BiasedCNN(nn.Module):
    """conv-BN-ReLU x2 -> GAP -> linear; ``bias`` on one class can force every prediction to that class."""

    def __init__(self, num_classes: int = 5, forced_class: int | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)
        if forced_class is not None:
            with torch.no_grad():
                self.fc.bias[forced_class] = 1e4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def make_cnn() -> type[BiasedCNN]:
    """The model class itself, for tests that need special instances."""
    return BiasedCNN


@pytest.fixture
def cnn() -> BiasedCNN:
    torch.manual_seed(0)
    return BiasedCNN()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """originals, view1, view2 (B=12, 3x16x16) and labels in [0, 5)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, 16, 16, generator=g)
    v1 = torch.randn(12, 3, 16, 16, generator=g)
    v2 = torch.randn(12, 3, 16, 16, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    return x, v1, v2, y
