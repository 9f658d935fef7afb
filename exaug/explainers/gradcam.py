"""Native batched Grad-CAM (and a random-map control), in plain torch.

One forward pass with a hook on the target layer, one ``torch.autograd.grad`` of the selected logits with respect
to that layer's activation only (no parameter gradients, no full backward), then the weighted channel sum,
bilinear upsampling and per-sample min-max: the whole batch at once, on whatever device the images are on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Explainer, targets_or_predicted
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
) -> tuple[Tensor, Tensor, Tensor]:
    """Raw (un-normalised, un-resized) Grad-CAM maps for a batch.

    The model is run as it is (no mode switch, no isolation): callers that must not disturb the model use
    :class:`GradCAM`, which wraps this in :func:`exaug.utils.isolation.isolated`. With ``create_graph=True``
    the maps stay differentiable with respect to the model parameters (second order, as CGC training needs).

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)``.
        layer: a submodule of ``model`` whose output is a feature map ``(B, C', h, w)``.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` int64 class indices, or ``None`` for the predicted classes.
        relu: apply ReLU to the weighted sum (the Grad-CAM paper); ``False`` keeps the signed map that the ExCon
            reference code used.
        create_graph: keep the graph of the gradient so the map can be back-propagated into the model.

    Returns:
        ``(cam, logits, targets)``: ``cam`` ``(B, 1, h, w)``, logits ``(B, K)``, explained targets ``(B,)``.
    """
    store: dict[str, Tensor] = {}

    def keep_activation(module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
        if not isinstance(output, Tensor):
            raise TypeError(f"Grad-CAM target layer must output a tensor, got {type(output).__name__}")
        if create_graph:
            store["activation"] = output
            return None
        # The map needs gradients from the logits back to this layer only: the part of the network before it
        # ran without recording a graph, and the graph starts here (also works with frozen parameters).
        torch.set_grad_enabled(True)
        output = output.detach().requires_grad_(True)
        store["activation"] = output
        return output

    handle = layer.register_forward_hook(keep_activation)
    grad_mode = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(create_graph)
        logits = model(images)
    finally:
        torch.set_grad_enabled(grad_mode)
        handle.remove()
    if "activation" not in store:
        raise RuntimeError("the Grad-CAM target layer was not called during the forward pass")
    activation = store["activation"]
    if activation.dim() != 4:
        raise ValueError(f"Grad-CAM needs a layer with a (B, C, h, w) output, got {tuple(activation.shape)}")
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits of shape (B, K), got {tuple(logits.shape)}")
    targets = targets_or_predicted(logits.detach(), targets)
    with torch.enable_grad():
        score = logits.gather(1, targets.unsqueeze(1)).sum()
        (grad,) = torch.autograd.grad(score, activation, create_graph=create_graph)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1, keepdim=True)
    if relu:
        cam = F.relu(cam)
    if not create_graph:
        cam = cam.detach()
    return cam, logits.detach(), targets


@register_explainer("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017), native and batched.

    Args:
        model: maps images to logits.
        target_layer: dotted path or module; default: the last module with a spatial output larger than 1x1.
        relu: ReLU on the map (default True); ``False`` gives the signed map of the ExCon reference code.
    """

    description = "Grad-CAM, native batched torch (one forward, gradient w.r.t. the layer only); option relu=False"
    uses_layer = True

    def __init__(self, model: nn.Module, *, target_layer: str | nn.Module | None = None, relu: bool = True) -> None:
        super().__init__(model, target_layer=target_layer)
        self.relu = bool(relu)

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        assert self.layer is not None
        return grad_cam(self.model, self.layer, images, targets, relu=self.relu)

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


@register_explainer("random")
class RandomSaliency(Explainer):
    """Uniform random saliency: the control baseline for explanation metrics and augmentation ablations.

    Args:
        model: maps images to logits (used only to resolve ``targets=None``).
        grid: side of the coarse random grid that is upsampled bilinearly (``None``: one value per pixel).
        seed: seed of a private generator, so maps are reproducible without touching the global RNG.
    """

    description = "random saliency (uniform noise, optionally on a coarse grid): a control baseline"

    def __init__(self, model: nn.Module, *, grid: int | None = None, seed: int | None = None) -> None:
        super().__init__(model)
        if grid is not None and grid < 1:
            raise ValueError(f"grid must be a positive int or None, got {grid}")
        self.grid = grid
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        logits, targets = self._forward_logits(images, targets)
        b, _, h, w = images.shape
        size = (self.grid, self.grid) if self.grid else (h, w)
        if self.seed is not None:
            if self._generator is None or self._generator.device != images.device:
                self._generator = torch.Generator(device=images.device).manual_seed(self.seed)
            raw = torch.rand((b, 1, *size), generator=self._generator, device=images.device)
        else:
            raw = torch.rand((b, 1, *size), device=images.device)
        return raw, logits, targets

    def extra_repr(self) -> str:
        return f"grid={self.grid}, seed={self.seed}"
