"""Encoders, projection heads and classifiers for explanation-driven contrastive learning.

See ``docs/models.md``.
"""

from __future__ import annotations

from .factory import TORCHVISION_PREFIX, create_encoder, create_model, default_explainer_layer, list_models
from .heads import Classifier, LinearClassifier, SupConModel, projection_head
from .networks import build_networks
from .resnet import BasicBlock, Bottleneck, CifarResNet, resnet18, resnet34, resnet50
from .torchvision_backbone import TorchvisionEncoder, list_torchvision_models

__all__ = [
    "TORCHVISION_PREFIX",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "Classifier",
    "LinearClassifier",
    "SupConModel",
    "TorchvisionEncoder",
    "build_networks",
    "create_encoder",
    "create_model",
    "default_explainer_layer",
    "list_models",
    "list_torchvision_models",
    "projection_head",
    "resnet18",
    "resnet34",
    "resnet50",
]
