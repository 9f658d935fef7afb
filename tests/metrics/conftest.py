"""Tiny seeded models for the metric tests (16x16 inputs, a few thousand parameters, milliseconds per call).

The CNN has BatchNorm with non-trivial running statistics and is returned in train mode with populated ``.grad``
tensors, so any metric that forgets eval mode, updates buffers or touches gradients is caught by
``snapshot_state`` / ``assert_same_state``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

NUM_CLASSES = 5


class TinyCNN(nn.Module):
    """conv-BN-ReLU (8) -> conv-BN-ReLU stride 2 (16) -> GAP -> linear; ``block2`` is the CAM layer (8x8 on 16x16)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.drop = nn.Dropout(0.5)  # active in train mode: a metric that forgets eval mode gets random outputs
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.block2(self.block1(x)).mean(dim=(2, 3))))


def build_cnn(seed: int = 0) -> TinyCNN:
    """A seeded :class:`TinyCNN` in train mode with random BatchNorm statistics and populated ``.grad``."""
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the global RNG of other tests
        torch.manual_seed(seed)
        model = TinyCNN()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.2, 0.2)
            for _ in range(2):  # running statistics that differ from any test batch's statistics
                model(torch.randn(8, 3, 16, 16) * 1.3 + 0.2)
        model.train()
        for p in model.parameters():  # gradients a user might be accumulating: metrics must leave them alone
            p.grad = torch.randn_like(p)
    return model


@pytest.fixture
def cnn() -> TinyCNN:
    return build_cnn()


@pytest.fixture
def images() -> torch.Tensor:
    """``(6, 3, 16, 16)`` normalised-looking batch."""
    return torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (6,), generator=torch.Generator().manual_seed(2))
