"""Name -> model factory (``create_model``) and the default explanation layer of each model.

Names: ``resnet18``, ``resnet34``, ``resnet50`` (CIFAR-stem ResNets, :mod:`exaug.models.resnet`), ``tv:<name>``
for any torchvision classification network (:class:`~exaug.models.TorchvisionEncoder`) and ``timm:<name>`` for
any timm model (:class:`~exaug.models.TimmEncoder`, optional extra ``exaug[timm]``). Any name may carry model
options as a query string, ``timm:vit_tiny_patch16_224?depth=2&patch_size=4`` or ``tv:vit_b_16?patch_size=4``
(values are JSON where they parse as JSON, else strings): that way one string, e.g. ``exaug train --model``,
records the whole architecture in a run's ``config.json``.
"""

from __future__ import annotations

import difflib
import json
import urllib.parse
from typing import Any, Callable

from torch import nn

from .heads import SupConModel
from .resnet import CifarResNet, resnet18, resnet34, resnet50
from .timm_backbone import TimmEncoder
from .torchvision_backbone import TorchvisionEncoder, list_torchvision_models

__all__ = [
    "create_model",
    "create_encoder",
    "list_models",
    "default_explainer_layer",
    "parse_model_name",
    "EXPLAINER_PRESETS",
    "TORCHVISION_PREFIX",
    "TIMM_PREFIX",
]

TORCHVISION_PREFIX = "tv:"
TIMM_PREFIX = "timm:"
#: Explainer layer presets of :func:`default_explainer_layer`: ``"exaug"`` (exaug's own choice) and ``"reference"``
#: (the layers of the ExCon reference code).
EXPLAINER_PRESETS = ("exaug", "reference")

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
# The reference code at 64 px (Tiny ImageNet): `layer4[1].conv2` of ResNet-18 (NOTES §10); for ResNet-50 the
# same position, the last convolution of the last block (`layer4[2].conv3`).
_REFERENCE_LARGE_LAYERS = {"resnet18": "encoder.layer4.1.conv2", "resnet50": "encoder.layer4.2.conv3"}
# Inputs smaller than this are treated like CIFAR (layer2); larger ones like Tiny ImageNet (last block).
_LARGE_INPUT = 64


def parse_model_name(name: str) -> tuple[str, dict[str, Any]]:
    """Split ``"<name>?key=value&..."`` into the bare name and its model options.

    Example:
        >>> parse_model_name("timm:vit_tiny_patch16_224?depth=2&patch_size=4&class_token=false")
        ('timm:vit_tiny_patch16_224', {'depth': 2, 'patch_size': 4, 'class_token': False})
        >>> parse_model_name("resnet18")
        ('resnet18', {})

    Raises:
        ValueError: a malformed or repeated option.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    base, sep, query = name.partition("?")
    if not sep:
        return name, {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as err:
        raise ValueError(f"model options of {name!r} must look like ?key=value&key2=value2 ({err})") from err
    options: dict[str, Any] = {}
    for key, text in pairs:
        if key in options:
            raise ValueError(f"model option {key!r} is given twice in {name!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text  # a plain string, e.g. ?global_pool=avg
    return base, options


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
        f"unknown model {name!r}.{hint} Valid names: {', '.join(list_models())}, "
        f"'{TIMM_PREFIX}<name>' with a timm model, or "
        f"'{TORCHVISION_PREFIX}<name>' with a torchvision classification model "
        f"({', '.join(list_torchvision_models())})"
    )


def create_encoder(
    name: str, *, width: float = 1.0, image_size: int = 32, pretrained: bool = False, **model_kwargs: Any
) -> nn.Module:
    """Build the feature encoder ``(B, 3, H, W) -> (B, num_features)`` registered as ``name``.

    Example:
        >>> import torch
        >>> encoder = create_encoder("tv:vit_b_16?patch_size=8&num_layers=1&hidden_dim=32&num_heads=2&mlp_dim=64",
        ...                          image_size=32)
        >>> encoder(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 32])

    Args:
        name: ``resnet18`` / ``resnet34`` / ``resnet50`` (CIFAR stem), ``tv:<torchvision name>`` or
            ``timm:<timm name>``, optionally followed by ``?key=value&...`` model options
            (:func:`parse_model_name`).
        width: channel multiplier of the CIFAR-stem ResNets; torchvision and timm networks only accept 1.0.
        image_size: input side: ViTs (``tv:vit_*``, timm token models) are built for it; every library network
            runs a dummy forward at this size to measure its feature dimension (and to fail early on sizes it
            cannot take).
        pretrained: library weights (``tv:`` / ``timm:`` names only; from the torch hub / Hugging Face cache, a
            ``RuntimeError`` says what to do when offline). Never downloaded unless asked for.
        **model_kwargs: model options, merged over those of the name: the CIFAR ResNets take ``in_channels``;
            ``tv:`` names take their builder's options (ViTs also ``patch_size``, ``num_layers``, ``num_heads``,
            ``hidden_dim``, ``mlp_dim``); ``timm:`` names take ``timm.create_model`` options (``depth``,
            ``patch_size``, ``embed_dim``, ...).

    Raises:
        ValueError: unknown name (valid names and the closest match are listed), or an option the chosen
            encoder does not support.
        ImportError: a ``timm:`` name without timm installed (names the extra ``exaug[timm]``).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    base, options = parse_model_name(name)
    options.update(model_kwargs)
    for prefix, build in ((TORCHVISION_PREFIX, TorchvisionEncoder), (TIMM_PREFIX, TimmEncoder)):
        if base.startswith(prefix):
            if width != 1.0:
                raise ValueError(f"width applies to the CIFAR-stem ResNets only; {name!r} needs width=1.0, "
                                 f"got {width}")
            library_name = base[len(prefix):]
            if prefix == TORCHVISION_PREFIX and library_name not in list_torchvision_models():
                raise _unknown_model(base)
            try:
                return build(library_name, image_size=image_size, pretrained=pretrained, **options)
            except TypeError as err:  # an option the builder does not take
                raise ValueError(f"model {name!r} does not accept the options {options}: {err}") from err
    if base not in _CIFAR_RESNETS:
        raise _unknown_model(base)
    if pretrained:
        raise ValueError(
            f"there are no pretrained weights for the CIFAR-stem {base!r}; use pretrained=False, or "
            f"'{TORCHVISION_PREFIX}{base}' for torchvision's ImageNet weights"
        )
    unknown = sorted(set(options) - {"in_channels"})
    if unknown:
        raise ValueError(f"the CIFAR-stem {base!r} takes the model option in_channels only, got {unknown}")
    return _CIFAR_RESNETS[base](width=width, **options)


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    width: float = 1.0,
    image_size: int = 32,
    head: str = "mlp",
    feat_dim: int = 128,
    pretrained: bool = False,
    **model_kwargs: Any,
) -> SupConModel:
    """Build encoder + projection head (+ linear classifier) for ExCon / SupCon training.

    Example:
        >>> import torch
        >>> model = create_model("resnet18", num_classes=10, width=0.25)
        >>> model(torch.rand(4, 3, 32, 32)).shape          # normalised projections
        torch.Size([4, 128])
        >>> clf = model.as_classifier()                     # images -> logits, for explainers
        >>> clf(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 10])
        >>> default_explainer_layer("resnet18", 32)
        'encoder.layer2.1.conv2'

    Args:
        name: see :func:`create_encoder` (query-string model options included).
        num_classes: classes of the linear classifier (``model.classifier``); ``None``: no classifier.
        width: channel multiplier (CIFAR-stem ResNets).
        image_size: input side (see :func:`create_encoder`).
        head: ``"mlp"`` or ``"linear"`` projection head.
        feat_dim: projection dimension.
        pretrained: library weights (``tv:`` / ``timm:`` names only).
        **model_kwargs: model options, see :func:`create_encoder`.

    Returns:
        A :class:`SupConModel` with ``.encoder``, ``.head`` and ``.classifier``.
    """
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
    encoder = create_encoder(name, width=width, image_size=image_size, pretrained=pretrained, **model_kwargs)
    return SupConModel(encoder, head=head, feat_dim=feat_dim, num_classes=num_classes)


def default_explainer_layer(model_name: str, image_size: int, preset: str = "exaug") -> str | None:
    """Grad-CAM layer for ``model_name`` at ``image_size``, a dotted path inside :class:`~exaug.models.Classifier`.

    ``preset="reference"``: the layers of the ExCon reference code (NOTES §10), for the models it was run with:

    * below 64 pixels (CIFAR, 32x32): ``encoder.layer2.1.conv2`` (ResNet-18), ``encoder.layer2.3.conv3``
      (ResNet-50): the last convolution of ``layer2``, before its BatchNorm and the residual sum (16x16 map);
    * 64 pixels and more (Tiny ImageNet): ``encoder.layer4.1.conv2`` (ResNet-18, as the reference code) and, by
      the same rule, ``encoder.layer4.2.conv3`` (ResNet-50);
    * any other model: ``ValueError`` (the reference code has no layer for it).

    ``preset="exaug"`` (what the trainer uses unless told otherwise):

    * below 64 pixels: the reference layers above; ``encoder.layer2`` (the stage output) for ResNet-34;
    * 64 pixels and more: the output of the last block, ``encoder.layer4.<last>`` (``encoder.layer4.1`` for
      ResNet-18), i.e. *after* the residual sum and ReLU: not the reference's ``layer4.1.conv2``;
    * ``tv:`` and ``timm:`` models: ``None``, i.e. the explainer picks its default layer.

    Example:
        >>> default_explainer_layer("resnet18", 64), default_explainer_layer("resnet18", 64, preset="reference")
        ('encoder.layer4.1', 'encoder.layer4.1.conv2')

    Raises:
        ValueError: unknown model name or preset, non-positive ``image_size``, or a model without a reference
            layer under ``preset="reference"``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if preset not in EXPLAINER_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(EXPLAINER_PRESETS)}, got {preset!r}")
    base, _ = parse_model_name(model_name)
    if base.startswith(TORCHVISION_PREFIX) and base[len(TORCHVISION_PREFIX):] not in list_torchvision_models():
        raise _unknown_model(base)
    if not base.startswith((TORCHVISION_PREFIX, TIMM_PREFIX)) and base not in _CIFAR_RESNETS:
        raise _unknown_model(base)
    large = image_size >= _LARGE_INPUT
    if preset == "reference":
        layers = _REFERENCE_LARGE_LAYERS if large else _REFERENCE_CIFAR_LAYERS
        if base not in _REFERENCE_LARGE_LAYERS:  # the reference code ran ResNet-18 and ResNet-50 only
            raise ValueError(f"the ExCon reference code has no explanation layer for {base!r}; the reference "
                             f"preset supports {', '.join(sorted(_REFERENCE_LARGE_LAYERS))}")
        return layers[base]
    if base not in _CIFAR_RESNETS:
        return None
    if not large:
        return _REFERENCE_CIFAR_LAYERS[base]
    return f"encoder.layer4.{_BLOCKS_PER_STAGE[base][3] - 1}"
