"""Checks for explainer authors and tests: does a piece of explanation code leave the model untouched?

:func:`snapshot_state` copies everything the isolation contract protects (parameters, ``.grad``, buffers,
``requires_grad``, each submodule's ``training`` flag, the hook count), :func:`assert_same_state` compares two
snapshots, and :func:`check_explainer_contract` runs an explainer once and checks both its output and the model.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                       nn.Flatten(), nn.Linear(4, 5))
    >>> images = torch.randn(2, 3, 8, 8)
    >>> check_explainer_contract("gradcam", model, images, targets=[1, 3]).shape
    torch.Size([2, 1, 8, 8])
    >>> def forgets_eval(images, targets):  # leaves the model in eval mode
    ...     model.eval()
    ...     return images.abs().sum(1, keepdim=True)
    >>> check_explainer_contract(forgets_eval, model, images)
    Traceback (most recent call last):
    ...
    AssertionError: the explainer changed the model: training changed for ['', '0', '1', '2', '3']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .explainers.base import Explainer
from .explainers.registry import ExplainerSpec, resolve_explainer
from .utils.checks import check_images
from .utils.isolation import hook_count

__all__ = ["snapshot_state", "assert_same_state", "check_explainer_contract"]


def snapshot_state(model: nn.Module) -> dict[str, Any]:
    """Deep copy of everything the isolation contract protects (for tests and debugging).

    Returns:
        dict with cloned parameters, gradients (or None), buffers, training flags, ``requires_grad`` flags and
        the hook count.
    """
    with torch.no_grad():
        return {
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "grads": {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()},
            "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
            "training": {n: m.training for n, m in model.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "hooks": hook_count(model),
        }


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Raise ``AssertionError`` naming the first difference between two :func:`snapshot_state` results."""
    for key in ("training", "requires_grad"):
        if before[key] != after[key]:
            diff = [n for n in before[key] if before[key][n] != after[key].get(n)]
            raise AssertionError(f"{key} changed for {diff[:5]}")
    if before["hooks"] != after["hooks"]:
        raise AssertionError(f"hooks left on the model: {before['hooks']} before, {after['hooks']} after")
    for key in ("params", "buffers", "grads"):
        b, a = before[key], after[key]
        if b.keys() != a.keys():
            raise AssertionError(f"{key}: names changed")
        for name in b:
            x, y = b[name], a[name]
            if (x is None) != (y is None):
                raise AssertionError(f"{key}[{name}]: None-ness changed ({x is None} -> {y is None})")
            if x is not None and not torch.equal(x, y):
                raise AssertionError(f"{key}[{name}] changed")


def check_explainer_contract(
    explainer_or_name: ExplainerSpec, model: nn.Module, images: Tensor, targets: Any = None
) -> Tensor:
    """Run an explainer once and check the contract every exaug backend keeps.

    Checked, in this order (the first violation raises):

    * the model is unchanged: parameters, ``.grad`` tensors, buffers (BatchNorm running statistics), the
      ``requires_grad`` and ``training`` flags of every submodule, and no hook left behind;
    * the map has shape ``(B, 1, H, W)`` and is finite;
    * for an :class:`~exaug.explainers.Explainer` (or a registered name): float32, detached, within ``[0, 1]``.
      A plain callable ``f(images, targets)`` may return raw, unnormalised maps (exaug normalises them), so its
      range is not checked.

    Use it on the model in the state it will be in when explained (e.g. train mode with accumulated gradients):
    a model in eval mode without gradients cannot show a mode or ``.grad`` leak.

    Args:
        explainer_or_name: a registered name (built with default options), an :class:`~exaug.explainers.Explainer`
            or a callable ``f(images, targets) -> (B, 1, H, W)``.
        model: the model being explained (the one a name is built for, or the one the explainer wraps).
        images: ``(B, C, H, W)`` batch.
        targets: passed to the explainer as is (``None``: the predicted class, for exaug explainers).

    Returns:
        The map ``(B, 1, H, W)`` the explainer produced.

    Raises:
        AssertionError: naming the first difference or output problem.

    Shape:
        ``images`` ``(B, C, H, W)`` -> ``(B, 1, H, W)``.
    """
    check_images(images)
    explainer = resolve_explainer(explainer_or_name, model)
    before = snapshot_state(model)
    saliency = explainer(images, targets)
    try:
        assert_same_state(before, snapshot_state(model))
    except AssertionError as error:
        raise AssertionError(f"the explainer changed the model: {error}") from None
    expected = (images.shape[0], 1, *images.shape[-2:])
    if not isinstance(saliency, Tensor) or tuple(saliency.shape) != expected:
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise AssertionError(f"the map must have shape (B, 1, H, W) = {expected}, got {got}")
    if not bool(torch.isfinite(saliency).all()):
        raise AssertionError("the map contains NaN or inf")
    if isinstance(explainer, Explainer):
        if saliency.dtype != torch.float32:
            raise AssertionError(f"an Explainer's map must be float32, got {saliency.dtype}")
        if saliency.requires_grad:
            raise AssertionError("an Explainer's map must be detached, but it requires grad")
        lo, hi = torch.aminmax(saliency)
        if lo < 0 or hi > 1:
            raise AssertionError(f"an Explainer's map must lie in [0, 1], got values in [{float(lo)}, {float(hi)}]")
    return saliency
