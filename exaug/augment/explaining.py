"""Explaining a batch for the augments: explainer resolution per model and normalised maps from any explainer.

Both :class:`~exaug.augment.ExplanationMaskAugment` and :class:`~exaug.augment.EDDAAugment` accept an explainer
in three forms (a registered name, an :class:`~exaug.explainers.Explainer`, or a plain callable
``f(images, targets) -> (B, 1, H, W)``) and need, per batch, per-sample normalised maps with their flat flags.
:class:`ExplainerSource` holds the form given and builds a named explainer once per model;
:func:`explain_normalized` turns any of the three into an :class:`~exaug.explainers.Explanation`.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer, Explanation, normalize_saliency
from ..explainers.registry import resolve_explainer
from ..utils.isolation import isolated
from ..utils.outputs import logits_of

__all__ = ["SaliencyFn", "ExplainerSource", "explain_normalized"]

#: A plain explainer callable: ``f(images (B, C, H, W), targets (B,) or None) -> raw maps (B, 1, H, W)``.
SaliencyFn = Callable[[Tensor, Tensor | None], Tensor]


class ExplainerSource:
    """The explainer an augment was given, resolved for the model passed at call time.

    A plain object (not an ``nn.Module``): an augment holding it never registers the explainer, nor the model a
    built explainer wraps, as a submodule, so ``aug.to(device)`` and ``aug.state_dict()`` never touch the model.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 2))
        >>> source = ExplainerSource("gradcam", {"target_layer": "1"})
        >>> source.for_model(model) is source.for_model(model)   # built once per model object
        True

    Args:
        explainer: a registered name (created lazily for each model), an :class:`Explainer`, or a callable
            ``f(images, targets) -> (B, 1, H, W)``.
        options: keyword options for :func:`exaug.create_explainer`; only with a name.
    """

    def __init__(self, explainer: str | Explainer | SaliencyFn, options: Mapping[str, Any] | None = None) -> None:
        if not (isinstance(explainer, (str, Explainer)) or callable(explainer)):
            raise TypeError("explainer must be a registered name, an Explainer, or a callable f(images, targets)")
        if options and not isinstance(explainer, str):
            raise ValueError("explainer_options only apply when explainer is given by name")
        self.explainer = explainer
        self.options = dict(options or {})
        # Weak: the augment must not keep a discarded model (and its explainer's hooks) alive.
        self._built: tuple[weakref.ref[nn.Module], Explainer] | None = None

    def for_model(self, model: nn.Module) -> Explainer | SaliencyFn:
        """The explainer used for ``model`` (built once per model object when given by name)."""
        if not isinstance(self.explainer, str):
            return self.explainer
        if self._built is not None and self._built[0]() is model:
            return self._built[1]
        built = resolve_explainer(self.explainer, model, **self.options)
        self._built = (weakref.ref(model), built)
        return built

    @property
    def name(self) -> str:
        """The registered name, or the class name of an explainer object (for ``repr``)."""
        return self.explainer if isinstance(self.explainer, str) else type(self.explainer).__name__


def explain_normalized(
    explainer: Explainer | SaliencyFn, images: Tensor, targets: Tensor | None, model: nn.Module
) -> Explanation:
    """Per-sample normalised maps of ``images`` for ``targets`` from an explainer object or a plain callable.

    An :class:`Explainer` is called as is (it isolates its own model). A plain callable is called inside
    :func:`~exaug.utils.isolation.isolated` on ``model``; with ``targets=None`` the classes are first predicted
    with one no-grad forward. Its output is checked and min-max normalised per sample, so any scale works and a
    constant map is flat (it keeps nothing).

    Args:
        explainer: an :class:`Explainer` or a callable ``f(images, targets) -> (B, 1, H, W)``.
        images: the batch to explain.
        targets: classes to explain, or ``None`` for the predicted ones.
        model: images -> logits, isolated while a plain callable runs.

    Returns:
        :class:`~exaug.explainers.Explanation`: ``saliency``, ``flat``, ``targets`` and ``logits`` (``None`` when
        no plain forward was run: perturbation backends and callables given explicit targets).

    Shape:
        - images: ``(B, C, H, W)``.
        - targets: ``(B,)`` int64 or ``None``.
        - saliency: ``(B, 1, H, W)`` float32 in ``[0, 1]``; flat, targets: ``(B,)``; logits: ``(B, K)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> energy = lambda images, targets: images.pow(2).sum(1, keepdim=True)
        >>> out = explain_normalized(energy, torch.randn(2, 3, 4, 4), None, model)
        >>> out.saliency.shape, float(out.saliency.amax()), out.targets.shape
        (torch.Size([2, 1, 4, 4]), 1.0, torch.Size([2]))
    """
    if isinstance(explainer, Explainer):
        return explainer.explain(images, targets)
    logits = None
    with isolated(model):
        if targets is None:
            with torch.no_grad():
                logits = logits_of(model(images))
            targets = logits.argmax(dim=1)
        raw = explainer(images.detach(), targets)
    expected = (images.shape[0], 1, *images.shape[-2:])
    if not isinstance(raw, Tensor) or raw.shape != expected:
        shape = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
        raise ValueError(f"the explainer callable must return (B, 1, H, W) = {expected}, got {shape}")
    saliency, flat = normalize_saliency(raw.detach().float())
    return Explanation(saliency=saliency, targets=targets, logits=None if logits is None else logits.detach(),
                       flat=flat)
