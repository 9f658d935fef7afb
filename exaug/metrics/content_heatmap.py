"""Content Heatmap (CGC, Pillai et al. 2022): the share of saliency mass inside the object.

    CH(x) = sum_{p in object} s(p) / sum_p s(p)        (higher is better, in [0, 1])

``s`` is a non-negative map (the explainers' ``[0, 1]`` saliency; CGC uses the ReLU'd, sum-normalised Grad-CAM,
whose ratio is the same). The object is a boolean mask or an ``xyxy`` box in pixel coordinates; a pixel belongs to
a box when its centre ``(j + 0.5, i + 0.5)`` lies inside it. A map with no mass at all (a flat explanation is all
zeros) is treated as uniform, so its score is the object's area fraction (chance level), never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Metric

__all__ = ["ContentHeatmap", "boxes_to_mask", "content_heatmap", "object_mask"]


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """``(B, 4)`` ``xyxy`` boxes in pixels -> ``(B, 1, height, width)`` bool mask (pixel-centre rule)."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a (B, 4) xyxy tensor, got {getattr(boxes, 'shape', type(boxes).__name__)}")
    boxes = boxes.float()
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    in_cols = (cols >= boxes[:, 0:1]) & (cols <= boxes[:, 2:3])  # (B, W)
    in_rows = (rows >= boxes[:, 1:2]) & (rows <= boxes[:, 3:4])  # (B, H)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def object_mask(saliency: Tensor, mask: Tensor | None, boxes: Tensor | None) -> Tensor:
    """The ``(B, 1, H, W)`` bool object mask of ``saliency`` ``(B, 1, H, W)`` from exactly one of ``mask`` or ``boxes``."""
    if (mask is None) == (boxes is None):
        raise ValueError("pass exactly one of mask (B, 1, H, W) bool or boxes (B, 4) xyxy")
    b, _, h, w = saliency.shape
    if boxes is not None:
        if boxes.shape[0] != b:
            raise ValueError(f"boxes must have one row per map: {boxes.shape[0]} vs {b}")
        return boxes_to_mask(boxes.to(saliency.device), h, w)
    assert mask is not None
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if tuple(mask.shape) != (b, 1, h, w):
        raise ValueError(f"mask must have shape {(b, 1, h, w)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got dtype {mask.dtype}")
    return mask.to(saliency.device)


def content_heatmap(saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None) -> Tensor:
    """Per-image share of saliency mass inside the object.

    Args:
        saliency: ``(B, 1, H, W)`` non-negative maps.
        mask: ``(B, 1, H, W)`` (or ``(B, H, W)``) bool object masks.
        boxes: ``(B, 4)`` ``xyxy`` object boxes in pixels (instead of ``mask``).

    Returns:
        ``(B,)`` float in ``[0, 1]``.
    """
    if not isinstance(saliency, Tensor) or saliency.dim() != 4 or saliency.shape[1] != 1:
        raise ValueError(f"saliency must have shape (B, 1, H, W), got {getattr(saliency, 'shape', None)}")
    if saliency.shape[0] == 0:
        raise ValueError("saliency is an empty batch (B = 0)")
    if (saliency < 0).any():
        raise ValueError("saliency must be non-negative (use the normalised map or apply ReLU)")
    obj = object_mask(saliency, mask, boxes).flatten(1)
    sal = saliency.detach().flatten(1).double()
    total = sal.sum(dim=1)
    inside = (sal * obj).sum(dim=1)
    area = obj.double().mean(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(torch.float64).tiny), area).float()


class ContentHeatmap(Metric):
    """Streaming mean Content Heatmap (the mean of :func:`content_heatmap` over every image).

    Example:
        >>> import torch
        >>> saliency = torch.zeros(1, 1, 4, 4)
        >>> saliency[..., :2, :] = 1.0  # all the mass in the top half
        >>> metric = ContentHeatmap()
        >>> metric.update(saliency, boxes=torch.tensor([[0.0, 0.0, 4.0, 1.0]]))  # the object: the top row
        >>> metric.compute()
        0.5
    """

    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", 0.0, "sum")
        self.add_state("count", 0, "sum")

    def update(self, saliency: Tensor, mask: Tensor | None = None, *, boxes: Tensor | None = None) -> None:
        """Add maps ``(B, 1, H, W)`` with their object ``mask`` or ``boxes`` (see :func:`content_heatmap`)."""
        values = content_heatmap(saliency, mask, boxes=boxes)
        self.accumulate(total=values.double().sum(), count=values.shape[0])

    def compute(self) -> float:
        """Mean share of saliency mass inside the objects."""
        self._require_data(self.count)
        return float(self.total) / self.count
