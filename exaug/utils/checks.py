"""Input validation shared by explainers, the augment, the saliency cache, the metrics and the explanation
targets: errors name the argument and what was expected."""

from __future__ import annotations

import numbers
import warnings
import weakref
from typing import Any, Callable

import torch
from torch import Tensor, nn

__all__ = [
    "check_images",
    "check_indices",
    "check_labels",
    "check_model_output",
    "positive_int",
    "non_negative_float",
    "probability",
]


def check_images(images: Any, name: str = "images") -> Tensor:
    """Validate a non-empty floating point ``(B, C, H, W)`` batch and return it."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point (normalised images), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")
    return images


def check_labels(labels: Any, batch_size: int, name: str = "targets") -> Tensor:
    """Validate integer class indices of shape ``(batch_size,)`` and return them as int64."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(labels.shape)}")
    return labels.long()


def check_indices(
    indices: Any, size: int, name: str = "indices", batch_size: int | None = None, check_range: bool = True
) -> Tensor:
    """Validate integer positions ``(B,)`` into a collection of ``size`` items and return them as int64.

    Args:
        indices: ``(B,)`` integer tensor (e.g. dataset indices of a batch).
        size: number of items; every index must lie in ``[0, size)``.
        name: argument name for the error messages.
        batch_size: if given, the required ``B``.
        check_range: check ``[0, size)``; this costs one host sync (none for an empty tensor), so callers that
            validate the same indices again may skip it.
    """
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer indices, got {type(indices).__name__}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
        raise TypeError(f"{name} must hold integer indices, got dtype {indices.dtype}")
    if indices.dim() != 1 or (batch_size is not None and indices.shape[0] != batch_size):
        expected = f"({batch_size},)" if batch_size is not None else "(B,)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(indices.shape)}")
    indices = indices.long()
    if check_range and indices.numel() > 0:
        lo, hi = torch.stack((indices.min(), indices.max())).tolist()  # one host sync
        if lo < 0 or hi >= size:
            raise ValueError(f"{name} must lie in [0, {size}), got values in [{lo}, {hi}]")
    return indices


# Models whose outputs were already tested for "L2-normalised embeddings instead of logits": the test costs a host
# sync, and its answer does not change from batch to batch, so it runs once per model (weak: no model is kept alive).
_NORM_CHECKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
_UNIT_NORM_TOL = 1e-3


def check_model_output(
    output: Any,
    batch_size: int,
    labels: Tensor | None = None,
    *,
    model: nn.Module | None = None,
    name: str = "model",
    labels_name: str = "labels",
) -> None:
    """Check that a model meant to classify returned ``(B, K)`` logits covering ``labels``.

    Explanations and the "is the masked image still classified correctly" check need images -> logits (encoder
    + linear classifier). A projection model (SupContrast's ``SupConResNet``: L2-normalised 128-d embeddings)
    returns a ``(B, D)`` tensor too, and silently makes every map and every routing decision meaningless, so:

    * not a ``(batch_size, K)`` tensor -> ``ValueError`` naming ``name``;
    * ``labels`` given and some label ``>= K`` (or negative) -> ``ValueError`` naming ``name`` and ``labels_name``;
    * every row has an L2 norm within ``1e-3`` of 1 -> a ``UserWarning`` naming the fix
      (``exaug.Classifier(encoder, linear)``). Tested once per ``model`` (every call when ``model`` is None), never
      for models that declare ``outputs_scores = True`` (the similarity targets of :mod:`exaug.targets`).

    The label range and the norm test share one host sync; a call with neither (labels ``None`` and a model
    already tested) syncs nothing.

    Example:
        >>> import torch
        >>> check_model_output(torch.randn(4, 10), 4, torch.tensor([0, 9, 3, 3]))
        >>> check_model_output(torch.randn(4, 10), 4, torch.tensor([0, 10, 3, 3]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: labels must be class indices in [0, 9] (model returns 10 logits per image)...

    Args:
        output: what the model returned.
        batch_size: ``B``.
        labels: ``(B,)`` int64 class indices to range-check, or ``None``.
        model: the model (its norm test runs once); ``None`` tests every call.
        name: the model argument's name in messages.
        labels_name: the labels argument's name in messages.

    Shape:
        ``output`` ``(B, K)``, ``labels`` ``(B,)``.
    """
    if not isinstance(output, Tensor) or output.dim() != 2 or output.shape[0] != batch_size:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{name} must return logits of shape (B, K) = ({batch_size}, K), got {shape}")
    # Similarity targets (exaug.targets, `outputs_scores = True`) return scores by design: no embedding warning.
    scores = getattr(model, "outputs_scores", False)
    check_norm = output.shape[0] > 0 and not scores and (model is None or model not in _NORM_CHECKED)
    check_range = labels is not None and labels.numel() > 0
    if not (check_norm or check_range):
        return
    values = []
    if check_range:
        assert labels is not None
        values += [labels.min(), labels.max()]
    if check_norm:
        norms = output.detach().float().norm(dim=1)
        values.append(((norms - 1).abs() <= _UNIT_NORM_TOL).all().to(torch.long))
    flags = torch.stack([v.to(device=output.device, dtype=torch.long) for v in values]).tolist()  # one host sync
    if check_range:
        lo, hi = flags[0], flags[1]
        k = output.shape[1]
        if lo < 0 or hi >= k:
            raise ValueError(
                f"{labels_name} must be class indices in [0, {k - 1}] ({name} returns {k} logits per image), got "
                f"values in [{lo}, {hi}]; {name} must map images to logits over every class (K > largest label): "
                "pass the encoder + linear classifier, e.g. exaug.Classifier(encoder, linear)"
            )
    if check_norm:
        if model is not None:
            _NORM_CHECKED.add(model)
        if flags[-1]:
            warnings.warn(
                f"{name} returns rows of unit L2 norm: these look like normalised embeddings (a projection head), "
                "not logits. Explanations and the masked-image check need images -> logits: pass the encoder + "
                "linear classifier, e.g. exaug.Classifier(encoder, linear)",
                UserWarning,
                stacklevel=3,
            )


def positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (or ``None`` when allowed), else a ``ValueError`` naming the option.

    Example:
        >>> positive_int("n_steps", 16)
        16
        >>> positive_int("n_steps", 0)
        Traceback (most recent call last):
        ...
        ValueError: n_steps must be a positive int, got 0
    """
    if value is None and allow_none:
        return None
    # bool is an Integral, but True as a batch size is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _real_number(name: str, value: Any, accept: Callable[[float], bool], expected: str) -> float:
    """``float(value)`` if it is a real number (not a bool) that ``accept`` approves, else a ``ValueError``."""
    # `not accept(...)` rather than a negated comparison inside accept: NaN fails every comparison, so it is rejected.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not accept(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def non_negative_float(name: str, value: Any) -> float:
    """``value`` as a float >= 0, else a ``ValueError`` naming the option (NaN is rejected).

    Example:
        >>> non_negative_float("stdevs", 0)
        0.0
    """
    return _real_number(name, value, lambda v: v >= 0, "a non-negative number")


def probability(name: str, value: Any) -> float:
    """``value`` as a float strictly inside ``(0, 1)``, else a ``ValueError`` naming the option.

    Example:
        >>> probability("p", 0.5)
        0.5
    """
    return _real_number(name, value, lambda v: 0 < v < 1, "a number in (0, 1)")
