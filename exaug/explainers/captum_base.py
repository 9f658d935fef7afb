"""How exaug drives Captum: the shared base classes of the Captum backends and the channel reduction.

Every Captum backend runs one no-grad forward (to report the logits and to resolve / range-check the targets),
then one Captum ``attribute(inputs, target=targets)`` call with ``targets`` the ``(B,)`` tensor, on a fresh leaf
copy of the images that requires grad. That makes gradients flow when the caller is under ``torch.no_grad()`` or
the model is frozen, and keeps Captum's ``requires_grad`` bookkeeping away from the caller's tensor. The base class
runs all of it inside :func:`exaug.utils.isolation.isolated`, which matters here: Captum never switches the model
to eval, so without it BatchNorm running statistics would drift and dropout would be on.

Pixel attributions ``(B, C, H, W)`` are reduced to one map ``(B, 1, H, W)`` by :func:`reduce_channels`.

Sampling methods (:class:`CaptumSampledExplainer`) run Captum on a fork of the global RNGs seeded from their own
``seed`` / ``generator`` (see :mod:`exaug.explainers.randomness`): Captum draws from torch's and numpy's global RNGs
and takes no generator.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from .base import Explainer
from .randomness import RandomSource

__all__ = ["CHANNEL_REDUCTIONS", "reduce_channels", "CaptumExplainer", "CaptumPixelExplainer", "CaptumSampledExplainer"]

#: Ways to turn ``(B, C, H, W)`` pixel attributions into one map per image, see :func:`reduce_channels`.
CHANNEL_REDUCTIONS: tuple[str, ...] = ("abs_sum", "sum", "positive_sum", "l2")

def reduce_channels(attributions: Tensor, how: str = "abs_sum") -> Tensor:
    """Reduce pixel attributions over the channel dimension.

    Args:
        attributions: ``(B, C, H, W)``.
        how: ``"abs_sum"`` (``sum_c |a_c|``: evidence for and against the class both count as important),
            ``"sum"`` (signed ``sum_c a_c``), ``"positive_sum"`` (``ReLU(sum_c a_c)``: only evidence for the class)
            or ``"l2"`` (``sqrt(sum_c a_c^2)``).

    Returns:
        ``(B, 1, H, W)``.
    """
    if attributions.dim() != 4:
        raise ValueError(f"attributions must have shape (B, C, H, W), got {tuple(attributions.shape)}")
    if how == "abs_sum":
        return attributions.abs().sum(dim=1, keepdim=True)
    if how == "sum":
        return attributions.sum(dim=1, keepdim=True)
    if how == "positive_sum":
        return attributions.sum(dim=1, keepdim=True).clamp_min(0)
    if how == "l2":
        return attributions.pow(2).sum(dim=1, keepdim=True).sqrt()
    raise ValueError(f"channel_reduction must be one of {CHANNEL_REDUCTIONS}, got {how!r}")


class CaptumExplainer(Explainer):
    """Shared driver of the Captum backends (not registered itself).

    Subclasses implement :meth:`_captum_map`, which receives the input leaf and the resolved targets and returns
    the raw map ``(B, 1, h, w)``.
    """

    #: Whether the method differentiates the model (False for perturbation methods, which then skip the graph).
    needs_input_grad: bool = True

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        logits, targets = self._forward_logits(images, targets)
        with torch.set_grad_enabled(self.needs_input_grad):
            # A fresh leaf: Captum toggles requires_grad on its inputs, and a frozen model or a no_grad caller would
            # otherwise leave nothing to differentiate.
            inputs = images.detach().requires_grad_(self.needs_input_grad)
            raw = self._captum_map(inputs, targets)
        return raw.detach(), logits, targets

    @abc.abstractmethod
    def _captum_map(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Raw map ``(B, 1, h, w)`` for ``inputs`` ``(B, C, H, W)`` and ``targets`` ``(B,)``."""


class CaptumPixelExplainer(CaptumExplainer):
    """Captum methods that attribute to input pixels ``(B, C, H, W)``; the map is their channel reduction.

    Subclasses implement :meth:`attributions`.

    Args:
        model: maps images to logits.
        channel_reduction: one of :data:`CHANNEL_REDUCTIONS` (see :func:`reduce_channels`).
    """

    def __init__(self, model: nn.Module, *, channel_reduction: str = "abs_sum") -> None:
        super().__init__(model)
        if channel_reduction not in CHANNEL_REDUCTIONS:
            raise ValueError(f"channel_reduction must be one of {CHANNEL_REDUCTIONS}, got {channel_reduction!r}")
        self.channel_reduction = channel_reduction

    @abc.abstractmethod
    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Raw Captum attributions ``(B, C, H, W)``: no isolation, no reduction (for tests and analysis).

        Args:
            inputs: ``(B, C, H, W)`` leaf that requires grad (for gradient methods).
            targets: ``(B,)`` int64.
        """

    def _captum_map(self, inputs: Tensor, targets: Tensor) -> Tensor:
        return reduce_channels(self.attributions(inputs, targets).detach(), self.channel_reduction)

    def extra_repr(self) -> str:
        return f"channel_reduction={self.channel_reduction!r}"


class CaptumSampledExplainer(CaptumPixelExplainer):
    """Captum methods that draw random numbers (``NoiseTunnel``, ``GradientShap``): the Captum call runs on a fork of
    the global RNGs seeded from ``seed`` / ``generator``, and the caller's RNG states are restored afterwards.

    Args:
        model: maps images to logits.
        seed: every call uses this seed (the same images always get the same map).
        generator: each call draws its seed from this ``torch.Generator`` (a reproducible stream of maps).
            With neither, Captum sees the global RNGs as the caller left them (``torch.manual_seed`` /
            ``np.random.seed`` make the maps reproducible), and they are not advanced.
        channel_reduction: see :func:`reduce_channels`.

    :meth:`attributions` (the raw Captum call, for tests) does not fork: only :meth:`explain` does.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        channel_reduction: str = "abs_sum",
    ) -> None:
        super().__init__(model, channel_reduction=channel_reduction)
        self.random = RandomSource(seed, generator)

    def _captum_map(self, inputs: Tensor, targets: Tensor) -> Tensor:
        with self.random.global_rngs(inputs.device):
            return super()._captum_map(inputs, targets)

    def extra_repr(self) -> str:
        source = "" if self.random.seed is None and self.random.generator is None else f"{self.random!r}, "
        return source + super().extra_repr()
