"""``AttentiveCutMix`` (Walawalkar et al., ICASSP 2020): paste the partner's top-k most salient grid cells."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer
from .explaining import SaliencyFn
from .mixing import MixAugment, MixParams, SaliencySource, random_permutation

__all__ = ["AttentiveCutMix", "grid_assignment"]


def grid_assignment(size: int, cells: int, device: torch.device) -> Tensor:
    """``(cells, size)`` float one-hot: pixel ``p`` belongs to cell ``floor(p * cells / size)`` (disjoint cells
    covering every pixel, sizes differing by at most one when ``cells`` does not divide ``size``)."""
    if not 1 <= cells <= size:
        raise ValueError(f"grid must be between 1 and the image side {size}, got {cells}")
    owner = torch.arange(size, device=device) * cells // size
    return (owner.unsqueeze(0) == torch.arange(cells, device=device).unsqueeze(1)).float()


class AttentiveCutMix(MixAugment):
    """Split the partner's saliency into a ``grid x grid`` board, paste its ``top_k`` most salient cells (mean
    saliency per cell) into the image at the same places; ``weight_b`` = pasted pixels / ``H * W``
    (``top_k / grid**2`` when the grid divides the image, the paper's ``6 / 49``).

    The paper takes the attention map of a separate pretrained ResNet-50 (7x7 last feature map); pass that frozen
    model at call time with ``explainer="gradcam"`` to reproduce it, or any explainer. ``explainer="random"``
    pastes ``top_k`` uniformly random cells (the random-box control). Ties between cells go to the lower index.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> frozen = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                        nn.Linear(4, 3))                 # the attention model, never modified
        >>> images, labels = torch.randn(2, 3, 14, 14), torch.tensor([0, 2])
        >>> mix = AttentiveCutMix(num_classes=3, explainer="gradcam", explainer_options={"target_layer": "1"})
        >>> batch = mix(images, labels, frozen, generator=torch.Generator().manual_seed(0))
        >>> batch.weight_b.tolist()                                 # 6 of 49 cells of 2x2 pixels
        [0.12244898080825806, 0.12244898080825806]

    Args:
        num_classes: ``K``.
        explainer: a registered name, an :class:`~exaug.explainers.Explainer`, ``f(images, targets)`` or
            ``"random"``.
        grid: cells per side (paper: 7).
        top_k: cells pasted (paper: 6).
        explainer_options: options of a named explainer.

    Shape:
        - images: ``(B, C, H, W)``; labels: ``(B,)``; output: :class:`~exaug.augment.MixedBatch`.
    """

    def __init__(self, num_classes: int, explainer: str | Explainer | SaliencyFn = "gradcam", grid: int = 7,
                 top_k: int = 6, explainer_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(num_classes)
        if not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive int, got {grid!r}")
        if not isinstance(top_k, int) or not 0 <= top_k <= grid * grid:
            raise ValueError(f"top_k must be an int in [0, grid**2 = {grid * grid}], got {top_k!r}")
        self.saliency = SaliencySource(explainer, explainer_options)
        self.grid = grid
        self.top_k = top_k

    def draw(self, images: Tensor, labels: Tensor, model: nn.Module | None = None, *,
             generator: torch.Generator | None = None) -> MixParams:
        """Partners (from ``generator``), then the partners' saliency and their top cells.

        Args:
            images: the batch.
            labels: class indices (the explained targets).
            model: images -> logits for model-based explainers (e.g. a frozen pretrained network), untouched.
            generator: random source (``None``: the global RNG).
        """
        labels = self.check_inputs(images, labels)
        b, _, h, w = images.shape
        partner = random_permutation(b, generator, images.device)
        saliency, _ = self.saliency.maps(images.index_select(0, partner), labels.index_select(0, partner), model,
                                         generator)
        rows = grid_assignment(h, self.grid, images.device)
        cols = grid_assignment(w, self.grid, images.device)
        # Mean saliency per cell: two small matrix products instead of a pooling with uneven windows.
        sums = rows @ saliency[:, 0] @ cols.T
        counts = rows.sum(1, keepdim=True) * cols.sum(1).unsqueeze(0)
        cell_mean = (sums / counts).flatten(1)
        chosen = torch.zeros_like(cell_mean)
        if self.top_k:
            # Stable descending sort: equal cells (flat maps) go in index order, deterministically.
            order = torch.sort(cell_mean, dim=1, descending=True, stable=True).indices[:, : self.top_k]
            chosen.scatter_(1, order, 1.0)
        mask = rows.T @ chosen.view(b, self.grid, self.grid) @ cols  # (B, H, W) 0/1
        weight_b = mask.flatten(1).sum(1).double() / (h * w)
        return MixParams(partner=partner, mask=mask.unsqueeze(1) > 0.5, weight_a=1.0 - weight_b, weight_b=weight_b,
                         saliency=saliency)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, explainer={self.saliency.name!r}, grid={self.grid}, " \
               f"top_k={self.top_k}"
