"""Name -> model factory (``create_model``) and the paper-faithful default explanation layer.

Names: ``resnet18``, ``resnet34``, ``resnet50`` (CIFAR-stem ResNets, :mod:`exaug.models.resnet`) and
``tv:<name>`` for any torchvision classification network (:class:`~exaug.models.TorchvisionEncoder`).
"""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from .heads import SupConModel
from .resnet import CifarResNet, resnet18, resnet34, resnet50
from .torchvision_backbone import TorchvisionEncoder, list_torchvision_models

__all__ = ["create_model", "create_encoder", "list_models", "default_explainer_layer", "TORCHVISION_PREFIX"]

TORCHVISION_PREFIX = "tv:"

_CIFAR_RESNETS: dict[str, Callable[..., CifarResNet]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
}
_BLOCKS_PER_STAGE = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}

# Grad-CAM layers of the ExCon reference code for 32x32 inputs (the last convolution of layer2, before its
# BatchNorm and the residual sum; a 16x16 map). ResNet-34 has no reference; it gets the layer2 output.
_REFERENCE_CIFAR_LAYERS = {
    "resnet18": "encoder.layer2.1.conv2",
    "resnet34": "encoder.layer2",
    "resnet50": "encoder.layer2.3.conv3",
}
# Inputs smaller than this are treated like CIFAR (layer2); larger ones like Tiny ImageNet (last block).
_LARGE_INPUT = 64


def list_models(include_torchvision: bool = False) -> list[str]:
    """Valid model names: the CIFAR-stem ResNets, plus every ``tv:<name>`` when ``include_torchvision``."""
    names = sorted(_CIFAR_RESNETS)
    if include_torchvision:
        names += [TORCHVISION_PREFIX + n for n in list_torchvision_models()]
    return names


def _unknown_model(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list_models(include_torchvision=True), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}, or "
        f"'{TORCHVISION_PREFIX}<name>' with a torchvision classification model "
        f"({', '.join(list_torchvision_models())})"
    )


def create_encoder(name: str, *, width: float = 1.0, image_size: int = 32, pretrained: bool = False) -> nn.Module:
    """Build the feature encoder ``(B, 3, H, W) -> (B, num_features)`` registered as ``name``.

    Args:
        name: ``resnet18`` / ``resnet34`` / ``resnet50`` (CIFAR stem) or ``tv:<torchvision name>``.
        width: channel multiplier of the CIFAR-stem ResNets; torchvision networks only accept 1.0.
        image_size: input side; torchvision encoders run a dummy forward at this size to measure their
            feature dimension (and to fail early on sizes they cannot take).
        pretrained: torchvision ImageNet weights (``tv:`` names only; loaded from the torch hub cache).

    Raises:
        ValueError: unknown name (valid names and the closest match are listed), or an option the chosen
            encoder does not support.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if name.startswith(TORCHVISION_PREFIX):
        tv_name = name[len(TORCHVISION_PREFIX):]
        if tv_name not in list_torchvision_models():
            raise _unknown_model(name)
        if width != 1.0:
            raise ValueError(f"width applies to the CIFAR-stem ResNets only; {name!r} needs width=1.0, got {width}")
        return TorchvisionEncoder(tv_name, image_size=image_size, pretrained=pretrained)
    if name not in _CIFAR_RESNETS:
        raise _unknown_model(name)
    if pretrained:
        raise ValueError(
            f"there are no pretrained weights for the CIFAR-stem {name!r}; use pretrained=False, or "
            f"'{TORCHVISION_PREFIX}{name}' for torchvision's ImageNet weights"
        )
    return _CIFAR_RESNETS[name](width=width)


def create_model(
    name: str,
    num_classes: int,
    *,
    width: float = 1.0,
    image_size: int = 32,
    head: str = "mlp",
    feat_dim: int = 128,
    pretrained: bool = False,
) -> SupConModel:
    """Build encoder + projection head + linear classifier for ExCon / SupCon training.

    Example:
        >>> import torch
        >>> model = create_model("resnet18", num_classes=10, width=0.25)
        >>> model(torch.rand(4, 3, 32, 32)).shape          # normalised projections
        torch.Size([4, 128])
        >>> clf = model.as_classifier()                     # images -> logits, for explainers
        >>> layer = default_explainer_layer("resnet18", 32)  # "encoder.layer2.1.conv2"

    Args:
        name: see :func:`create_encoder`.
        num_classes: classes of the linear classifier (``model.classifier``).
        width: channel multiplier (CIFAR-stem ResNets).
        image_size: input side (see :func:`create_encoder`).
        head: ``"mlp"`` or ``"linear"`` projection head.
        feat_dim: projection dimension.
        pretrained: torchvision ImageNet weights (``tv:`` names only).

    Returns:
        A :class:`SupConModel` with ``.encoder``, ``.head`` and ``.classifier``.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    encoder = create_encoder(name, width=width, image_size=image_size, pretrained=pretrained)
    return SupConModel(encoder, head=head, feat_dim=feat_dim, num_classes=num_classes)


def default_explainer_layer(model_name: str, image_size: int) -> str | None:
    """Grad-CAM layer of the ExCon reference code, as a dotted path inside :class:`~exaug.models.Classifier`.

    * inputs below 64 pixels (CIFAR, 32x32): ``encoder.layer2.1.conv2`` for ResNet-18 and
      ``encoder.layer2.3.conv3`` for ResNet-50, exactly as in the reference code (a 16x16 map);
      ``encoder.layer2`` for ResNet-34, which the reference code does not use;
    * 64 pixels and more (Tiny ImageNet): the last block, ``encoder.layer4.<last>`` (``layer4[-1]``);
    * ``tv:`` models: ``None``, i.e. let the explainer pick its default (the last feature map larger than 1x1).

    Raises:
        ValueError: unknown model name or non-positive ``image_size``.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if model_name.startswith(TORCHVISION_PREFIX):
        if model_name[len(TORCHVISION_PREFIX):] not in list_torchvision_models():
            raise _unknown_model(model_name)
        return None
    if model_name not in _CIFAR_RESNETS:
        raise _unknown_model(model_name)
    if image_size < _LARGE_INPUT:
        return _REFERENCE_CIFAR_LAYERS[model_name]
    return f"encoder.layer4.{_BLOCKS_PER_STAGE[model_name][3] - 1}"
