"""Encoders, projection heads and classifiers for explanation-driven contrastive learning.

See ``docs/models.md``.
"""

from __future__ import annotations

from .backbone import BackboneEncoder
from .factory import (
    EXPLAINER_PRESETS,
    TIMM_PREFIX,
    TORCHVISION_PREFIX,
    create_encoder,
    create_model,
    default_explainer_layer,
    list_models,
    parse_model_name,
)
from .heads import Classifier, LinearClassifier, SupConModel, projection_head
from .networks import build_networks
from .resnet import BasicBlock, Bottleneck, CifarResNet, resnet18, resnet34, resnet50
from .timm_backbone import TimmEncoder
from .torchvision_backbone import TorchvisionEncoder, list_torchvision_models

__all__ = [
    "EXPLAINER_PRESETS",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "BackboneEncoder",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "Classifier",
    "LinearClassifier",
    "SupConModel",
    "TimmEncoder",
    "TorchvisionEncoder",
    "build_networks",
    "create_encoder",
    "create_model",
    "default_explainer_layer",
    "list_models",
    "list_torchvision_models",
    "parse_model_name",
    "projection_head",
    "resnet18",
    "resnet34",
    "resnet50",
]
