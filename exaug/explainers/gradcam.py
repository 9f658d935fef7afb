"""Native batched Grad-CAM as a function (and a random-map control), in plain torch.

The :class:`GradCAM` explainer is one row of the native CAM family in :mod:`exaug.explainers.cam`.

One forward pass with a hook on the target layer, one ``torch.autograd.grad`` of the selected logits with respect
to that layer's activation only (no parameter gradients, no full backward), then the weighted channel sum,
bilinear upsampling and per-sample min-max: the whole batch at once, on whatever device the images are on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Explainer
from .cam import GradCAM, gradcam_map, layer_activation_and_gradient
from .layers import ReshapeTransform
from .randomness import check_generator, check_seed
from .registry import register_explainer

__all__ = ["GradCAM", "grad_cam", "RandomSaliency"]


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    *,
    relu: bool = True,
    create_graph: bool = False,
    reshape_transform: ReshapeTransform | None = None,
    layout: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Raw (un-normalised, un-resized) Grad-CAM maps for a batch.

    The model is run as it is (no mode switch, no isolation): callers that must not disturb the model use
    :class:`GradCAM`, which wraps this in :func:`exaug.utils.isolation.isolated`. With ``create_graph=True``
    the maps stay differentiable with respect to the model parameters (second order, as CGC training needs).

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)``.
        layer: a submodule of ``model`` whose output is a feature map ``(B, C', h, w)``, tokens ``(B, N, C')`` or
            channels-last ``(B, h, w, C')`` (see :func:`~exaug.explainers.layers.to_feature_map`).
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` int64 class indices, or ``None`` for the predicted classes.
        relu: apply ReLU to the weighted sum (the Grad-CAM paper); ``False`` keeps the signed map that the ExCon
            reference code used.
        create_graph: keep the graph of the gradient so the map can be back-propagated into the model.
        reshape_transform: callable from the layer output to ``(B, C', h, w)``; overrides ``layout``.
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"``.

    Returns:
        ``(cam, logits, targets)``: ``cam`` ``(B, 1, h, w)``, logits ``(B, K)``, explained targets ``(B,)``.

    Shape:
        ``images`` ``(B, C, H, W)`` -> ``(B, 1, h, w)``, ``(B, K)``, ``(B,)``.
    """
    activation, grad, logits, targets = layer_activation_and_gradient(
        model, layer, images, targets, reshape_transform=reshape_transform, layout=layout, create_graph=create_graph
    )
    cam = gradcam_map(activation, grad)
    if relu:
        cam = F.relu(cam)
    return cam, logits.detach(), targets


@register_explainer("random")
class RandomSaliency(Explainer):
    """Uniform random saliency: the control baseline for explanation metrics and augmentation ablations.

    The maps come from a private stream, never from (nor advancing) the global RNG.

    Args:
        model: maps images to logits (used only to resolve ``targets=None``).
        grid: side of the coarse random grid that is upsampled bilinearly (``None``: one value per pixel).
        seed: seed of the private generator (on the images' device), which then advances from call to call.
            ``None``: seeded with ``torch.initial_seed()`` on the first call, so ``torch.manual_seed`` still makes
            runs reproducible.
        generator: ``torch.Generator`` to draw from instead (any device; exclusive with ``seed``).
    """

    description = "random saliency (uniform noise, optionally on a coarse grid): a control baseline"

    def __init__(
        self, model: nn.Module, *, grid: int | None = None, seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model)
        if grid is not None and grid < 1:
            raise ValueError(f"grid must be a positive int or None, got {grid}")
        self.grid = grid
        self.seed = check_seed(seed)
        self.generator = check_generator(generator)
        if self.seed is not None and self.generator is not None:
            raise ValueError("give either seed or generator, not both")
        self._generator: torch.Generator | None = None

    def _private_generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        if self._generator is None or self._generator.device != device:
            seed = self.seed if self.seed is not None else torch.initial_seed()
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        logits, targets = self._forward_logits(images, targets)
        b, _, h, w = images.shape
        size = (self.grid, self.grid) if self.grid else (h, w)
        generator = self._private_generator(images.device)
        raw = torch.rand((b, 1, *size), generator=generator, device=generator.device).to(images.device)
        return raw, logits, targets

    def extra_repr(self) -> str:
        source = "generator" if self.generator is not None else f"seed={self.seed}"
        return f"grid={self.grid}, {source}"
