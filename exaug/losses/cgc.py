"""CGC loss (contrastive Grad-CAM consistency, seed 003) and the differentiable Grad-CAM it trains through.

For each image ``i`` of a batch, ``T_i`` is a random resized crop + flip. With ``h(x)`` the Grad-CAM map of ``x``
for the class predicted on the original, the anchor is ``T_i(h(x_i))`` (the original's map moved by the
transform), its positive is ``h(T_i(x_i))`` (the augmented view's own map) and the negatives are the augmented
maps of the other images. Maps are flattened and L2-normalised; the loss is InfoNCE::

    L = -1/B * sum_i log( exp(a_i . g_i / t) / sum_j exp(a_i . g_j / t) )

Gradients reach the model through both maps, i.e. through the gradients Grad-CAM is made of (second order).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers.gradcam import grad_cam
from ..utils import dist

__all__ = ["CGCLoss", "cgc_heatmaps"]


def cgc_heatmaps(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    *,
    size: tuple[int, int] | None = None,
    eps: float = 1e-8,
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
    layout: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable batched Grad-CAM as CGC trains with it: ReLU, upsampled, sum-normalised.

    One forward of ``model`` as it is (train mode, BatchNorm updates: this *is* the training forward). The map is
    :func:`exaug.explainers.gradcam.grad_cam` with ``create_graph=True``, so ``maps.backward()`` reaches the
    parameters. The logits are returned with their graph (captured by a hook on ``model``, because ``grad_cam``
    hands back detached logits), so the cross-entropy of the same forward needs no second pass.

    Args:
        model: images ``(B, C, H, W)`` -> logits ``(B, K)``.
        layer: the Grad-CAM layer, a submodule of ``model`` (CGC: the last block, ``layer4``). Token ``(B, N, C)``
            and channels-last ``(B, h, w, C)`` outputs are read as feature maps, see
            :func:`exaug.explainers.layers.to_feature_map`.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` classes to explain; ``None``: the predicted classes.
        size: output ``(H, W)``; default: the images' size.
        eps: added to each map's sum (an all-zero map stays zero instead of becoming NaN).
        reshape_transform: callable from the layer output to ``(B, C, h, w)`` (gradients flow through it);
            overrides ``layout``.
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"``.

    Returns:
        ``(maps, logits, targets)``: ``(B, 1, H, W)`` maps summing to 1 (or 0), ``(B, K)`` logits with graph,
        ``(B,)`` explained classes.
    """
    captured: dict[str, Any] = {}
    handle = model.register_forward_hook(lambda module, inputs, output: captured.__setitem__("logits", output))
    try:
        cam, _, targets = grad_cam(model, layer, images, targets, relu=True, create_graph=True,
                                   reshape_transform=reshape_transform, layout=layout)
    finally:
        handle.remove()
    size = size or (images.shape[-2], images.shape[-1])
    if cam.shape[-2:] != size:
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    maps = cam / (cam.sum(dim=(1, 2, 3), keepdim=True) + eps)
    return maps, captured["logits"], targets


class CGCLoss(nn.Module):
    """InfoNCE between transformed original heatmaps and augmented-view heatmaps (CGC).

    Example:
        In training the transform is :class:`exaug.augment.ReplayableSpatial` (random resized crop + flip, replayed
        on the maps with ``spatial.apply(h_orig, params)``); a horizontal flip, its own replay, keeps this short.

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 5))
        >>> images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> augmented = images.flip(-1)
        >>> h_orig, logits, pred = cgc_heatmaps(model, model[0], images)  # maps (4, 1, 8, 8), sum-normalised
        >>> h_aug, _, _ = cgc_heatmaps(model, model[0], augmented, pred)
        >>> loss = F.cross_entropy(logits, labels) + 0.5 * CGCLoss(0.5)(h_orig.flip(-1), h_aug)
        >>> loss.backward()  # reaches the conv weights through both maps (second order)
        >>> model[0].weight.grad.shape
        torch.Size([4, 3, 3, 3])

    Shape:
        ``transformed``, ``augmented``: ``(B, ...)`` (e.g. ``(B, 1, H, W)``), same shape -> ``()``.

    Args:
        temperature: ``t`` (CGC: 0.5).
        gather_distributed: use the augmented maps of all ranks as keys (negatives), with gradients flowing back
            to each rank; anchors stay local.
        check_inputs: raise on NaN/inf inputs (one host sync per call).
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False, check_inputs: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed
        self.check_inputs = check_inputs

    def forward(self, transformed: Tensor, augmented: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            transformed: ``(B, ...)`` maps of the originals after the replayed transform (anchors), e.g.
                ``(B, 1, H, W)``; flattened per sample.
            augmented: ``(B, ...)`` maps of the augmented views, same shape (row ``i`` is the positive of
                anchor ``i``, every other row a negative).

        Returns:
            Scalar loss (mean over anchors).
        """
        for name, value in (("transformed", transformed), ("augmented", augmented)):
            if not isinstance(value, Tensor) or value.dim() < 2 or value.shape[0] == 0:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"`{name}` must be a non-empty batch of maps (B, ...), got {shape}")
            if not value.is_floating_point():
                raise ValueError(f"`{name}` must be a floating-point tensor, got {value.dtype}")
        if transformed.shape != augmented.shape:
            raise ValueError(f"`transformed` {tuple(transformed.shape)} and `augmented` {tuple(augmented.shape)} "
                             "must have the same shape (replay the transform on maps of the images' size)")
        if self.check_inputs and not torch.jit.is_scripting():
            if not bool(torch.isfinite(transformed).all() & torch.isfinite(augmented).all()):
                raise ValueError("`transformed` or `augmented` contains NaN or inf")
        # At least float32 for the similarities: maps from autocast regions may be half precision.
        dtype = torch.promote_types(torch.promote_types(transformed.dtype, augmented.dtype), torch.float32)
        anchors = F.normalize(transformed.flatten(1).to(dtype), dim=1)
        keys = F.normalize(augmented.flatten(1).to(dtype), dim=1)
        offset = 0
        if self.gather_distributed and dist.is_distributed():
            sizes = dist.gather_sizes(keys.shape[0], keys.device)
            offset = sum(sizes[: dist.rank()])
            keys = dist.gather(keys, sizes)
        logits = anchors @ keys.T / self.temperature
        positives = torch.arange(anchors.shape[0], device=anchors.device) + offset
        return F.cross_entropy(logits, positives)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
