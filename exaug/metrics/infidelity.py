"""Infidelity and max-sensitivity of explanations (Yeh et al. 2019), computed by Captum on exaug explainers.

Infidelity of an attribution ``a`` of ``f`` at ``x``, for random perturbations ``I``::

    INFD(a, f, x) = E_I[ (I · a - (f(x) - f(x - I)))^2 ]        (lower is better)

``f`` is the logit (default) or the softmax probability of the explained class; ``I · a`` sums over every input
element. This module only supplies seeded, batched perturbation functions and the plumbing; the expectation is
Captum's :func:`captum.metrics.infidelity`, so numbers are exactly Captum's for the same perturbations.

Attribution scale. The metric classes use the explainer's *normalised* saliency (per-sample min-max to
``[0, 1]``, ``(B, 1, H, W)``) broadcast over the colour channels, so ``I · a = sum_{c,h,w} I[c,h,w] a[h,w]``.
Infidelity is not scale invariant unless ``normalize=True`` (Yeh et al.'s optimal rescaling ``beta``): without
it and with small noise the value is dominated by ``std^2 * |a|^2`` and therefore rewards compact maps (fewer
salient pixels). Which regime the ExCon paper used (it reports ~1e-3 for Grad-CAM maps) is not stated; report
the options with the numbers. The pure function :func:`infidelity` accepts any attributions (raw ones too).

Perturbations (see :func:`gaussian_perturbation`, :func:`square_perturbation`):

* ``"gaussian"``: ``I ~ N(0, noise_std^2)`` i.i.d. per element, ``x - I`` (Captum's documented example uses
  ``std = 0.003``, which is the default here).
* ``"square"``: Yeh et al.'s square removal: a random square (side uniform in ``1..max_square``, position
  uniform) of every channel is set to ``square_baseline`` (0 = dataset-mean colour for normalised inputs), i.e.
  ``I = (x - baseline) * 1_square``.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from ..explainers import Explainer
from ..utils.isolation import isolated
from ..utils.outputs import logits_of
from ..utils.checks import check_images, check_labels
from .base import Metric, check_model, explainer_from, predict

__all__ = [
    "Infidelity",
    "SensitivityMax",
    "gaussian_perturbation",
    "infidelity",
    "sensitivity_max",
    "square_perturbation",
    "uniform_perturbation",
]

PerturbFunc = Callable[[Tensor], tuple[Tensor, Tensor]]


def _generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A private generator (the caller's global RNG stays untouched); ``None`` uses the global RNG."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(int(seed))


def gaussian_perturbation(std: float = 0.003, generator: torch.Generator | None = None) -> PerturbFunc:
    """Captum ``perturb_func``: ``I ~ N(0, std^2)`` per element, returns ``(I, inputs - I)``.

    Args:
        std: noise standard deviation in input units (normalised space for normalised inputs).
        generator: source of randomness, on the inputs' device (``None``: global RNG).
    """
    if std <= 0:
        raise ValueError(f"noise_std must be positive, got {std}")

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype) * std
        return noise, inputs - noise

    return perturb


def square_perturbation(
    max_size: int = 10, baseline: float = 0.0, generator: torch.Generator | None = None
) -> PerturbFunc:
    """Captum ``perturb_func``: remove one random square per sample (Yeh et al.'s "Square" perturbation).

    Each sample of ``inputs`` ``(N, C, H, W)`` gets a square of side ``s ~ U{1, ..., min(max_size, H, W)}`` at
    a uniform position; inside it every channel takes the value ``baseline``. Returns ``(I, inputs - I)`` with
    ``I = (inputs - baseline) * square``.
    """
    if max_size < 1:
        raise ValueError(f"max_square must be >= 1, got {max_size}")

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = inputs.shape
        dev = inputs.device
        side = torch.randint(1, min(max_size, h, w) + 1, (n, 1), generator=generator, device=dev)
        top = (torch.rand((n, 1), generator=generator, device=dev) * (h - side + 1)).floor().long()
        left = (torch.rand((n, 1), generator=generator, device=dev) * (w - side + 1)).floor().long()
        rows = torch.arange(h, device=dev)
        cols = torch.arange(w, device=dev)
        in_rows = (rows >= top) & (rows < top + side)  # (n, H)
        in_cols = (cols >= left) & (cols < left + side)  # (n, W)
        square = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)
        removed = (inputs - baseline) * square
        return removed, inputs - removed

    return perturb


def uniform_perturbation(generator: torch.Generator | None = None) -> Callable[[Tensor, float], Tensor]:
    """Captum sensitivity ``perturb_func``: ``inputs + U(-r, r)`` per element (Captum's default, seeded)."""

    def perturb(inputs: Tensor, perturb_radius: float) -> Tensor:
        noise = torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return inputs + (2 * noise - 1) * perturb_radius

    return perturb


def _perturb_func(
    perturbation: str | PerturbFunc, noise_std: float, max_square: int, square_baseline: float, generator: Any
) -> PerturbFunc:
    if callable(perturbation):
        return perturbation
    if perturbation == "gaussian":
        return gaussian_perturbation(noise_std, generator)
    if perturbation == "square":
        return square_perturbation(max_square, square_baseline, generator)
    raise ValueError(f"perturbation must be 'gaussian', 'square' or a callable, got {perturbation!r}")


def infidelity(
    model: nn.Module,
    images: Tensor,
    attributions: Tensor,
    targets: Tensor | None = None,
    *,
    perturbation: Literal["gaussian", "square"] | PerturbFunc = "gaussian",
    noise_std: float = 0.003,
    max_square: int = 10,
    square_baseline: float = 0.0,
    n_perturb_samples: int = 10,
    seed: int | torch.Generator | None = 0,
    normalize: bool = False,
    output: Literal["logit", "prob"] = "logit",
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """Per-sample infidelity through :func:`captum.metrics.infidelity`.

    Args:
        model: images ``(B, C, H, W)`` -> logits ``(B, K)``; run in eval mode, no autograd, untouched.
        images: ``(B, C, H, W)``.
        attributions: ``(B, 1, H, W)`` (broadcast over channels) or ``(B, C, H, W)``.
        targets: ``(B,)`` explained classes; ``None``: the predicted classes (one extra forward).
        perturbation: ``"gaussian"``, ``"square"`` or a Captum ``perturb_func(inputs) -> (I, inputs - I)``.
        noise_std: std of the Gaussian perturbation.
        max_square: largest square side of the square perturbation.
        square_baseline: value of removed squares.
        n_perturb_samples: perturbations per image.
        seed: seed of a private generator (or a generator, or ``None`` for the global RNG).
        normalize: Yeh et al.'s optimal rescaling of the attributions (scale-invariant infidelity).
        output: ``f`` is the ``"logit"`` or the softmax ``"prob"`` of the target class.
        max_examples_per_batch: Captum's cap on perturbed images per forward (at least ``B``).

    Returns:
        ``(B,)`` infidelity per image.
    """
    check_model(model)
    check_images(images)
    if not isinstance(attributions, Tensor) or attributions.dim() != 4:
        raise ValueError("attributions must be a (B, 1, H, W) or (B, C, H, W) tensor")
    b, c, h, w = images.shape
    same_size = attributions.shape[0] == b and attributions.shape[-2:] == images.shape[-2:]
    if not same_size or attributions.shape[1] not in (1, c):
        raise ValueError(f"attributions {tuple(attributions.shape)} do not match images {tuple(images.shape)}")
    if n_perturb_samples < 1:
        raise ValueError(f"n_perturb_samples must be >= 1, got {n_perturb_samples}")
    if output not in ("logit", "prob"):
        raise ValueError(f"output must be 'logit' or 'prob', got {output!r}")
    from captum.metrics import infidelity as captum_infidelity

    images = images.detach()
    if targets is None:
        targets = predict(model, images).argmax(dim=1)
    targets = check_labels(torch.as_tensor(targets, device=images.device), b, "targets")
    attributions = attributions.detach().to(images.dtype).expand(b, c, h, w)
    generator = _generator(seed, images.device)
    perturb = _perturb_func(perturbation, noise_std, max_square, square_baseline, generator)

    def forward(x: Tensor) -> Tensor:
        logits = logits_of(model(x))
        return logits if output == "logit" else logits.softmax(dim=1)

    with isolated(model), torch.no_grad():
        values = captum_infidelity(
            forward,
            perturb,
            images,
            attributions,
            target=targets,
            n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=max_examples_per_batch,
            normalize=normalize,
        )
    return values.reshape(b)


def sensitivity_max(
    explainer: Explainer,
    images: Tensor,
    targets: Tensor | None = None,
    *,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm_ord: str = "fro",
    seed: int | torch.Generator | None = 0,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """Max-sensitivity of the explainer's normalised saliency, via :func:`captum.metrics.sensitivity_max`.

    ``SENS(x) = max_{|d|_inf <= r} |S(x + d) - S(x)| / |S(x)|`` estimated with ``n_perturb_samples`` uniform
    draws ``d``; ``S`` is the ``[0, 1]`` saliency of the same target class (lower is better).

    Args:
        explainer: any :class:`~exaug.explainers.Explainer`.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` classes; ``None``: the classes predicted on the clean images.
        perturb_radius: L-infinity radius ``r`` in input units.
        n_perturb_samples: draws per image.
        norm_ord: norm of the difference (Captum's ``norm_ord``).
        seed: seed of a private generator (or a generator, or ``None``).
        max_examples_per_batch: Captum's cap on perturbed images per explainer call.

    Returns:
        ``(B,)`` sensitivity per image.
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(f"explainer must be an Explainer, got {type(explainer).__name__}")
    check_images(images)
    if perturb_radius <= 0 or n_perturb_samples < 1:
        raise ValueError(
            f"perturb_radius must be > 0 and n_perturb_samples >= 1, got {perturb_radius}, {n_perturb_samples}"
        )
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    images = images.detach()
    if targets is None:
        targets = explainer.explain(images).targets
    perturb = uniform_perturbation(_generator(seed, images.device))

    def explain(inputs: Tensor | tuple[Tensor, ...], target: Tensor) -> Tensor | tuple[Tensor, ...]:
        # Captum passes the clean inputs as a 1-tuple (and expects a tuple back), the perturbed ones as a tensor.
        if isinstance(inputs, tuple):
            return (explainer.explain(inputs[0], target).saliency,)
        return explainer.explain(inputs, target).saliency

    values = captum_sensitivity_max(
        explain,
        images,
        perturb_func=perturb,
        perturb_radius=perturb_radius,
        n_perturb_samples=n_perturb_samples,
        norm_ord=norm_ord,
        max_examples_per_batch=max_examples_per_batch,
        target=targets,
    )
    return values.reshape(images.shape[0])


class _SeededExplanationMetric(Metric):
    """Running mean of a per-image score of an explainer's maps, with perturbations from a generator that is
    seeded once per :meth:`reset` (a pass over a fixed loader is reproducible; batches get different draws)."""

    def __init__(
        self,
        explainer_or_name: Explainer | str,
        model: nn.Module,
        *,
        target_layer: Any = None,
        seed: int = 0,
        explainer_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.model = check_model(model)
        self.explainer = explainer_from(explainer_or_name, model, target_layer, explainer_options)
        self.seed = seed
        self.options = options
        super().__init__()
        self.add_state("total", 0.0, "sum")
        self.add_state("count", 0, "sum")
        self._generator: torch.Generator | None = None

    def reset(self) -> None:
        """Forget every batch; the next :meth:`update` re-seeds the perturbations."""
        super().reset()
        self._generator = None

    @abc.abstractmethod
    def _scores(self, images: Tensor, targets: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Per-image scores ``(B,)``."""

    def update(self, images: Tensor, targets: Tensor | None = None) -> None:
        """Add the scores of ``images`` ``(B, C, H, W)`` for ``targets`` (default: the model's prediction)."""
        check_images(images)
        if self._generator is None:
            self._generator = _generator(self.seed, images.device)
        values = self._scores(images, targets, self._generator)
        self.accumulate(total=values.sum(), count=images.shape[0])

    def compute(self) -> float:
        """Mean score per image."""
        self._require_data(self.count)
        return float(self.total) / self.count


class Infidelity(_SeededExplanationMetric):
    """Streaming mean infidelity of an explainer's normalised saliency (see the module docstring; lower is better).

    The perturbation generator is seeded once per :meth:`reset`, so a pass over a fixed loader is reproducible
    and different batches get different perturbations.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> metric = Infidelity("gradcam", model, target_layer="0", noise_std=0.003, n_perturb_samples=4)
        >>> metric.update(torch.randn(2, 3, 8, 8))
        >>> metric.compute() >= 0
        True

    Args:
        explainer_or_name: an explainer or a registered name (built on ``model``).
        model: the classifier ``f``.
        target_layer: layer for an explainer built by name.
        seed: seed of the perturbations.
        **options: keyword options of :func:`infidelity` (``perturbation``, ``noise_std``, ``max_square``,
            ``square_baseline``, ``n_perturb_samples``, ``normalize``, ``output``, ``max_examples_per_batch``)
            and, for an explainer built by name, explainer options under ``explainer_options={...}``.
    """

    higher_is_better = False

    def _scores(self, images: Tensor, targets: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if targets is None and self.explainer.model is not self.model:
            targets = predict(self.model, images).argmax(dim=1)
        explanation = self.explainer.explain(images, targets)
        return infidelity(self.model, images, explanation.saliency, explanation.targets, seed=generator, **self.options)


class SensitivityMax(_SeededExplanationMetric):
    """Streaming mean max-sensitivity (see :func:`sensitivity_max`; lower is better).

    Args:
        explainer_or_name: an explainer or a registered name (built on ``model``).
        model: the classifier (used to build a named explainer).
        target_layer: layer for an explainer built by name.
        seed: seed of the perturbations (one generator per :meth:`reset`).
        explainer_options: options for an explainer built by name.
        **options: ``perturb_radius``, ``n_perturb_samples``, ``norm_ord``, ``max_examples_per_batch``.
    """

    higher_is_better = False

    def _scores(self, images: Tensor, targets: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return sensitivity_max(self.explainer, images, targets, seed=generator, **self.options)
