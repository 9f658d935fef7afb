"""The explainer settings that reproduce the ExCon reference code's masks (``--explainer-preset reference``).

The reference code explains with Captum's ``LayerGradCam`` and its default ``relu_attributions=False`` (the
signed map) at the last convolution of ``layer2`` (CIFAR ResNet-18 / ResNet-50) or ``layer4[1].conv2``
(ResNet-18 at 64 px), upsamples bilinearly, min-max normalises each map and keeps the pixels above 0.5. exaug's
native ``gradcam`` with ``relu=False`` at that layer, the default masking rule (threshold 0.5, zero fill, true
label) and eval-mode BatchNorm gives the same masks. Why eval mode, and the other deliberate deviations, are in
``docs/concepts.md``.
"""

from __future__ import annotations

from typing import Any

from ..models import EXPLAINER_PRESETS, default_explainer_layer

__all__ = ["REFERENCE_EXPLAINER", "EXPLAINER_PRESETS", "reference_explainer_options", "explainer_preset_options"]

#: The explainer of the reference code (Grad-CAM).
REFERENCE_EXPLAINER = "gradcam"


def reference_explainer_options(model_name: str, image_size: int = 32) -> dict[str, Any]:
    """Options of the native ``gradcam`` explainer that reproduce the reference code's maps.

    Example:
        >>> reference_explainer_options("resnet18", 32)
        {'target_layer': 'encoder.layer2.1.conv2', 'relu': False}

    Args:
        model_name: ``resnet18`` or ``resnet50`` (the models the reference code ran).
        image_size: input side: below 64 the CIFAR layer, from 64 on the Tiny ImageNet layer.

    Raises:
        ValueError: a model the reference code has no layer for.
    """
    return {"target_layer": default_explainer_layer(model_name, image_size, preset="reference"), "relu": False}


def explainer_preset_options(preset: str, explainer: str) -> dict[str, Any]:
    """Explainer options a preset adds under the user's own (``TrainConfig.explainer_preset``).

    ``"exaug"`` adds nothing; ``"reference"`` needs the ``gradcam`` explainer and adds ``relu=False`` (its layer
    comes from :func:`~exaug.models.default_explainer_layer` with ``preset="reference"``).

    Example:
        >>> explainer_preset_options("reference", "gradcam"), explainer_preset_options("exaug", "rise")
        ({'relu': False}, {})

    Raises:
        ValueError: unknown preset, or the reference preset with another explainer.
    """
    if preset not in EXPLAINER_PRESETS:
        raise ValueError(f"explainer_preset must be one of {', '.join(EXPLAINER_PRESETS)}, got {preset!r}")
    if preset == "exaug":
        return {}
    if explainer != REFERENCE_EXPLAINER:
        raise ValueError(f"explainer_preset 'reference' uses the explainer {REFERENCE_EXPLAINER!r} (the reference "
                         f"code's Grad-CAM), got explainer {explainer!r}")
    return {"relu": False}
