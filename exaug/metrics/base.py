"""The streaming-metric contract and the small helpers every metric shares.

A metric class follows torchmetrics' pattern without depending on it: :meth:`Metric.update` folds a batch into
running sums (tensors on the batch's device, no host sync), :meth:`Metric.compute` turns the sums into Python
numbers (the only host sync), :meth:`Metric.reset` forgets everything. Each class is a thin shell over a pure
function of the same module that does the tensor work on one batch.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..explainers import Explainer, create_explainer
from ..utils.isolation import isolated

__all__ = ["Metric"]


class Metric(abc.ABC):
    """Base class of the streaming metrics: ``update(...)`` per batch, ``compute()`` at the end, ``reset()``."""

    def __init__(self) -> None:
        self.reset()

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every batch seen so far."""

    @abc.abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Fold one batch into the running state."""

    @abc.abstractmethod
    def compute(self) -> Any:
        """The metric over every batch since the last :meth:`reset`."""

    def _require_data(self, count: int | Tensor) -> None:
        if int(count) == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update() with a non-empty batch")


def check_saliency(saliency: Any, images: Tensor, name: str = "saliency") -> Tensor:
    """Validate a ``(B, 1, H, W)`` map matching ``images`` ``(B, C, H, W)``."""
    if not isinstance(saliency, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(saliency).__name__}")
    expected = (images.shape[0], 1, *images.shape[-2:])
    if tuple(saliency.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} to match images, got {tuple(saliency.shape)}")
    return saliency


def check_fractions(values: Sequence[float], name: str) -> tuple[float, ...]:
    """A non-empty tuple of floats in ``[0, 1]``."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{name} must contain at least one value")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"{name} must be in [0, 1], got {bad}")
    return values


def resolve_explainer(
    explainer_or_name: Explainer | str, model: nn.Module, target_layer: Any = None, **options: Any
) -> Explainer:
    """An :class:`Explainer` instance: returned as is, or built by name with :func:`create_explainer`."""
    if isinstance(explainer_or_name, Explainer):
        if target_layer is not None or options:
            raise ValueError("target_layer and explainer options apply only when the explainer is given by name")
        return explainer_or_name
    if isinstance(explainer_or_name, str):
        return create_explainer(explainer_or_name, model, target_layer=target_layer, **options)
    kind = type(explainer_or_name).__name__
    raise TypeError(f"explainer_or_name must be an Explainer or a registered name, got {kind}")


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def predict(model: nn.Module, images: Tensor, batch_size: int | None = None) -> Tensor:
    """Logits ``(B, K)`` of ``model`` in eval mode without autograd, in chunks of ``batch_size`` images."""
    with isolated(model), torch.no_grad():
        if batch_size is None or images.shape[0] <= batch_size:
            return model(images)
        return torch.cat([model(chunk) for chunk in images.split(batch_size)])


def normalisation(mean: Any, std: Any, images: Tensor) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors on ``images``' device (``None``: 0 and 1, pixel inputs)."""
    channels = images.shape[1]

    def as_tensor(value: Any, default: float, name: str) -> Tensor:
        t = torch.as_tensor(default if value is None else value, dtype=images.dtype, device=images.device)
        t = t.reshape(-1)
        if t.numel() not in (1, channels):
            raise ValueError(f"{name} must have 1 or {channels} values (one per channel), got {t.numel()}")
        return t.expand(channels).reshape(1, channels, 1, 1)

    m, s = as_tensor(mean, 0.0, "mean"), as_tensor(std, 1.0, "std")
    if (s <= 0).any():
        raise ValueError("std must be positive")
    return m, s
