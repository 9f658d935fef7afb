"""A library network without its classifier as a feature encoder: the part that torchvision and timm share.

:class:`BackboneEncoder` holds the headless network as ``backbone``, flattens what it returns into ``(B, D)``
features and measures ``D`` (``num_features``) with one dummy forward at the requested image size, so no
per-architecture table of feature sizes is needed and a size the network cannot take fails at construction
instead of at the first training step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BackboneEncoder"]


class BackboneEncoder(nn.Module):
    """Images -> pooled features ``(B, num_features)`` from a headless ``backbone``.

    Args:
        backbone: a network whose output, flattened after the batch dimension, is the feature vector.
        label: how the network is named in error messages (e.g. ``"torchvision model 'resnet18'"``).
        image_size: side of the square dummy input that measures ``num_features``.

    Attributes:
        backbone: the network; dotted paths for explainers start here (``encoder.backbone.layer4``).
        num_features: dimension of the pooled features.

    Shape:
        ``(B, 3, H, W) -> (B, num_features)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1))
        >>> encoder = BackboneEncoder(net, "a tiny CNN", image_size=16)
        >>> encoder.num_features, encoder(torch.rand(2, 3, 16, 16)).shape
        (8, torch.Size([2, 8]))
    """

    def __init__(self, backbone: nn.Module, label: str, image_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = self._measure_features(label, image_size)

    def _measure_features(self, label: str, image_size: int) -> int:
        # Eval mode so BatchNorm accepts a single 1x1 sample and its running statistics stay untouched; the
        # previous modes are restored module by module (a freshly built network is entirely in train mode).
        modes = {module: module.training for module in self.backbone.modules()}
        self.backbone.eval()
        try:
            with torch.no_grad():
                out = self.forward(torch.zeros(1, 3, image_size, image_size))
        except (RuntimeError, ValueError, AssertionError) as err:  # shape checks raise all three
            raise ValueError(f"{label} does not accept {image_size}x{image_size} inputs: {err}") from err
        finally:
            for module, training in modes.items():
                module.training = training
        return out.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, num_features)``."""
        return torch.flatten(self.backbone(x), 1)
