"""CIFAR-stem ResNets (3x3 stride-1 stem, no max-pool) with a channel ``width`` multiplier.

The layout follows SupContrast's ``resnet_big.py`` (the network ExCon was trained with): a 3x3 stride-1 ``conv1``,
``bn1``, four stages ``layer1..layer4`` with strides 1, 2, 2, 2, global average pooling. On 32x32 inputs the stage
outputs are 32, 16, 8 and 4 pixels wide, so ``layer2`` gives the 16x16 map that the reference ExCon code explains.

``width`` scales every channel count (``round(64 * width)`` base channels, at least 1), so CPU smoke runs can use
a network a few percent of the size of the real one with the same depth and module paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "resnet18", "resnet34", "resnet50", "scaled_channels"]


def scaled_channels(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1."""
    return max(1, int(round(channels * width)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    Args:
        in_planes: input channels.
        planes: output channels of both convolutions (``expansion = 1``).
        stride: stride of the first convolution (and of the projection shortcut).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_planes, H, W) -> (B, planes, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (ResNet-50).

    Args:
        in_planes: input channels.
        planes: bottleneck channels; the block outputs ``4 * planes``.
        stride: stride of the 3x3 convolution (and of the projection shortcut).
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_planes, H, W) -> (B, 4 * planes, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    # Identity when shapes match; otherwise a strided 1x1 projection (ResNet "option B").
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class CifarResNet(nn.Module):
    """ResNet encoder with a CIFAR stem: ``(B, in_channels, H, W) -> (B, num_features)`` pooled features.

    Submodules are named ``conv1, bn1, layer1..layer4, avgpool`` so dotted paths such as ``layer2.1.conv2``
    address the same layers as in SupContrast / the ExCon reference code.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        num_blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        width: channel multiplier (1.0: 64/128/256/512 stage channels; 0.25: 16/32/64/128).
        in_channels: image channels.

    Attributes:
        num_features: dimension of the pooled feature vector (``512 * width`` for ResNet-18/34, four times that
            for ResNet-50, after rounding).
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(width, (int, float)) or not width > 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        if len(num_blocks) != 4 or any(n < 1 for n in num_blocks):
            raise ValueError(f"num_blocks must be four positive block counts, got {tuple(num_blocks)}")
        self.width = float(width)
        stem = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_planes = stem
        for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)), start=1):
            planes = scaled_channels(planes, width)
            stage = []
            for s in [stride] + [1] * (blocks - 1):
                stage.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Spatial feature map of ``layer4``: ``(B, C, H, W) -> (B, num_features, H / 8, W / 8)``."""
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(x.shape)}")
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features: ``(B, C, H, W) -> (B, num_features)``."""
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


def resnet18(width: float = 1.0, in_channels: int = 3) -> CifarResNet:
    """CIFAR-stem ResNet-18 encoder (``num_features = 512 * width``)."""
    return CifarResNet(BasicBlock, (2, 2, 2, 2), width=width, in_channels=in_channels)


def resnet34(width: float = 1.0, in_channels: int = 3) -> CifarResNet:
    """CIFAR-stem ResNet-34 encoder (``num_features = 512 * width``)."""
    return CifarResNet(BasicBlock, (3, 4, 6, 3), width=width, in_channels=in_channels)


def resnet50(width: float = 1.0, in_channels: int = 3) -> CifarResNet:
    """CIFAR-stem ResNet-50 encoder (``num_features = 2048 * width``)."""
    return CifarResNet(Bottleneck, (3, 4, 6, 3), width=width, in_channels=in_channels)
