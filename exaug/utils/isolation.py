"""Run explanation code on a user's model without leaving any trace on it.

Every explainer, the masking check forward and the metrics call the user's model in places where the user
did not ask for training: BatchNorm must not update its running statistics, dropout must be off, and the
gradients the user may have accumulated (for example between two steps of gradient accumulation) must be
exactly as they were. :func:`isolated` is the one place that guarantees this. The helpers that *check* the
guarantee (``snapshot_state``, ``assert_same_state``, ``check_explainer_contract``) are in :mod:`exaug.testing`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["isolated", "hook_count"]


@contextlib.contextmanager
def isolated(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode and hide its ``.grad`` tensors.

    On exit, whatever happened inside (a library calling ``model.eval()`` or ``model.zero_grad()``, a full
    ``backward()``, an exception), each submodule's ``training`` flag and each parameter's ``.grad`` object
    are restored. Gradients produced inside the block are discarded.

    The gradient swap moves references only (no copies), so it costs O(#parameters) Python work, not memory.

    Args:
        model: the user's module.
        eval_mode: switch every submodule to eval mode inside the block (BatchNorm uses and keeps its running
            statistics, dropout is off).

    Yields:
        The same ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    # Each submodule's own flag: users freeze BatchNorm layers individually, so a single model.train(flag) on
    # exit would be wrong.
    flags = [(module, module.training) for module in model.modules()]
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
        for p, grad in zip(params, saved_grads):
            p.grad = grad


def hook_count(model: nn.Module) -> int:
    """Number of forward / backward hooks registered on ``model`` and its submodules (for leak checks)."""
    total = 0
    for module in model.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
        ):
            hooks = getattr(module, name, None)
            if hooks:
                total += len(hooks)
    for p in model.parameters():
        hooks = getattr(p, "_backward_hooks", None)
        if hooks:
            total += len(hooks)
    return total
