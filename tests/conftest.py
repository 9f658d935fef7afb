"""Shared test infrastructure: tiny deterministic models for the explainer tests.

Everything is seeded and small (16x16 inputs, a few thousand parameters) so that a test runs in milliseconds on a
CPU. The BatchNorm layers get non-trivial affine parameters and running statistics, so that a backend that runs
the model in train mode (batch statistics) instead of eval mode gives visibly different maps.
"""

from __future__ import annotations

import copy
import functools
from typing import Callable

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="session")
def _single_intra_op_thread():
    """Run the test session with one intra-op thread.

    The test models are tiny, so extra threads only add synchronisation, and on a shared, oversubscribed CPU
    OpenMP's spinning turns millisecond forwards into hundreds of milliseconds (tests/explainers took 110 s with
    2 threads under load, 13 s with 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class BasicBlock(nn.Module):
    """ResNet basic block that reuses one ``nn.ReLU`` module twice, exactly like torchvision's (a known trap for
    hook-based methods such as guided backprop)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class TinyResNet(nn.Module):
    """CIFAR-style ResNet in miniature: stem 3->8, ``layer1`` (8, stride 1), ``layer2`` (8->16, stride 2), GAP, linear.

    On a 16x16 input ``layer2`` outputs 8x8, so it is the default CAM layer.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


class ConstantLogits(nn.Module):
    """Logits that do not depend on the input (zero head weights, distinct non-zero biases).

    The input still reaches the logits through the graph, so gradient methods run and produce exact zeros.
    """

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, num_classes)
        with torch.no_grad():
            self.fc.weight.zero_()
            # Non-zero scores: AblationCAM divides by the original score.
            self.fc.bias.copy_(torch.arange(1.0, num_classes + 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@functools.lru_cache(maxsize=None)
def _tiny_resnet_prototype(num_classes: int, dtype: torch.dtype, seed: int) -> TinyResNet:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyResNet(num_classes).to(dtype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=g) * 0.4 - 0.2)
        # A few train-mode forwards so running statistics differ from the batch statistics of test inputs.
        for _ in range(3):
            model(torch.randn(8, 3, 16, 16, generator=g).to(dtype) * 1.5 + 0.3)
    return model.train()


def build_tiny_resnet(num_classes: int = 10, dtype: torch.dtype = torch.float32, seed: int = 0) -> TinyResNet:
    """A seeded :class:`TinyResNet` in train mode with randomised BatchNorm parameters and running statistics.

    Built once per configuration and deep-copied, so tests can modify their instance freely.
    """
    return copy.deepcopy(_tiny_resnet_prototype(num_classes, dtype, seed))


@pytest.fixture
def make_tiny_resnet() -> Callable[..., TinyResNet]:
    """Factory ``make_tiny_resnet(num_classes=10, dtype=torch.float32, seed=0)``."""
    return build_tiny_resnet


@pytest.fixture
def tiny_resnet() -> TinyResNet:
    """Float32 :class:`TinyResNet`, 10 classes, train mode."""
    return build_tiny_resnet()


@pytest.fixture
def tiny_resnet64() -> TinyResNet:
    """Float64 :class:`TinyResNet` in eval mode, for exact comparisons between implementations."""
    return build_tiny_resnet(dtype=torch.float64).eval()


@pytest.fixture
def constant_model() -> ConstantLogits:
    torch.manual_seed(0)
    return ConstantLogits()


@pytest.fixture
def images16() -> torch.Tensor:
    """``(3, 3, 16, 16)`` float32 batch."""
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def resnet18_cifar10() -> nn.Module:
    """``torchvision.models.resnet18(num_classes=10)``, random init (no download), eval mode.

    Its ImageNet stem makes ``layer4`` 2x2 on 64x64 inputs and 1x1 on 32x32 inputs.
    """
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()
