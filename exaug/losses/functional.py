"""The contrastive core behind :class:`~exaug.losses.SupConLoss` and :class:`~exaug.losses.ExConBLoss`.

:func:`contrastive_loss` is the masked log-probability loss both are made of; the checks validate their inputs
with the same messages, and :func:`gather_contrast_set` builds the cross-rank contrast set. Everything here is a
plain function (no module state), so other losses can be built from it.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from ..utils import dist

__all__ = [
    "contrastive_loss",
    "check_features",
    "check_labels",
    "check_temperatures",
    "check_values",
    "gather_contrast_set",
]


def contrastive_loss(
    features: Tensor,
    contrast: Tensor,
    positives: Tensor,
    weights: Optional[Tensor] = None,
    offset: int = 0,
    anchor_views: Optional[int] = None,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
) -> Tensor:
    """Masked supervised contrastive loss, the single implementation behind SupCon and ExConB.

    Entries are (view, sample) pairs laid out view-major, as in SupContrast. Anchor ``i`` is one of the first
    ``anchor_views`` views of a local sample; for each anchor

    ``L_i = -t/base_t * sum_p m_ip log( exp(s_ip) / sum_{a != i} w_a exp(s_ia) ) / sum_p m_ip``,  ``s = e.e / t``,

    where ``m`` is ``positives`` tiled over views with the anchor's own entry removed. Anchors whose positive
    weights sum to 0 are dropped, and the result is the mean over the remaining anchors.

    Args:
        features: ``(n, n_views, dim)`` local embeddings; the anchors come from here.
        contrast: ``(m, n_views, dim)`` contrast set; ``features`` is rows ``offset:offset + n`` of it.
        positives: ``(n, m)`` sample-level positive weights (bool or float >= 0). Self pairs may be set;
            only the anchor's own entry is removed, its other views stay positives.
        weights: ``(n_views, m)`` denominator weight of every contrast entry (``None``: all ones). Must be
            > 0 wherever ``positives`` is.
        offset: index in ``contrast`` of local sample 0.
        anchor_views: number of leading views used as anchors (``None``: all).
        temperature: ``t``.
        base_temperature: ``base_t``; the loss is scaled by ``t / base_t``.

    Returns:
        Scalar loss. If no anchor has a positive: a zero connected to ``features`` (its gradient is zero).

    Shape:
        ``features`` ``(n, V, D)``, ``contrast`` ``(m, V, D)``, ``positives`` ``(n, m)``, ``weights`` ``(V, m)``
        -> ``()``.

    Example:
        SimCLR on two samples with two views each: the positive of each entry is the other view of its sample.

        >>> import torch
        >>> import torch.nn.functional as F
        >>> z = F.normalize(torch.randn(2, 2, 8), dim=-1)
        >>> loss = contrastive_loss(z, z, torch.eye(2, dtype=torch.bool), temperature=0.5, base_temperature=0.5)
        >>> e = z.transpose(0, 1).reshape(4, 8)  # view-major entries
        >>> s = (e @ e.T / 0.5).fill_diagonal_(float("-inf"))
        >>> partner = torch.tensor([2, 3, 0, 1])
        >>> naive = -(s.log_softmax(dim=1)[torch.arange(4), partner]).mean()
        >>> torch.allclose(loss, naive)
        True
    """
    n, n_views, dim = features.shape
    m = contrast.shape[0]
    anchor_views = n_views if anchor_views is None else anchor_views
    device = features.device

    anchors = features[:, :anchor_views].transpose(0, 1).reshape(-1, dim)  # (anchor_views * n, dim)
    entries = contrast.transpose(0, 1).reshape(-1, dim)  # (n_views * m, dim)
    logits = anchors @ entries.T / temperature  # (anchor_views * n, n_views * m)

    # An anchor's own entry: same view, sample offset + k. Block-diagonal over views of a shifted identity.
    same_sample = (torch.arange(n, device=device) + offset)[:, None] == torch.arange(m, device=device)
    same_view = torch.arange(anchor_views, device=device)[:, None] == torch.arange(n_views, device=device)
    is_self = (same_view[:, None, :, None] & same_sample[None, :, None, :]).reshape(anchors.shape[0], -1)  # like logits

    pos = positives.to(logits.dtype).repeat(anchor_views, n_views).masked_fill(is_self, 0)  # like logits
    if weights is None:
        weights = torch.ones(n_views, m, dtype=logits.dtype, device=device)
    denom = weights.to(logits.dtype).reshape(1, -1).expand_as(logits).masked_fill(is_self, 0)  # like logits

    n_pos = pos.sum(1)  # (anchor_views * n,)
    has_pos = n_pos > 0
    # log w turns the weighted sum into a plain logsumexp (w = 0 -> -inf -> excluded). Anchors without positives
    # are discarded below, but an all -inf row would still put NaN into the backward pass; give them every entry.
    log_denom = torch.where(has_pos[:, None], denom.log(), torch.zeros_like(denom))
    log_prob = logits - torch.logsumexp(logits + log_denom, dim=1, keepdim=True)
    mean_log_prob_pos = (pos * log_prob).sum(1) / torch.where(has_pos, n_pos, torch.ones_like(n_pos))
    per_anchor = -(temperature / base_temperature) * mean_log_prob_pos  # exactly 0 where has_pos is False
    # Mean over anchors with >= 1 positive, without a host sync; 0 / 1 when there is none.
    return per_anchor.sum() / has_pos.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------- input checks


def check_features(features: Tensor) -> None:
    """``ValueError`` unless ``features`` is a floating point ``(batch, n_views, dim)`` tensor."""
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"`features` must have shape (batch, n_views, dim), got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"`features` must be a floating-point tensor, got {features.dtype}")


def _is_compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def check_values(features: Tensor, warn: str | None = None) -> bool:
    """NaN/inf in ``features`` -> ``ValueError``; tells whether they are L2-normalised. One host sync for both.

    Skipped (returns ``False``) for empty features and while scripting or compiling, where a host sync is not
    allowed.

    Args:
        features: ``(batch, n_views, dim)`` embeddings.
        warn: if given, the name of the caller (e.g. ``"SupConLoss"``) for a warning when the features are not
            unit-norm; the losses pass it only until they have warned once.

    Returns:
        ``True`` when some embedding's norm differs from 1 by more than ``max(1e-3, 10 eps)``.
    """
    if features.numel() == 0 or torch.jit.is_scripting() or _is_compiling():
        return False
    x = features.detach()
    tol = max(1e-3, 10 * torch.finfo(x.dtype).eps)
    flags = torch.stack([~torch.isfinite(x).all(), ((x.norm(dim=-1) - 1).abs() > tol).any()]).tolist()
    if flags[0]:
        raise ValueError("`features` contains NaN or inf")
    if flags[1] and warn is not None:
        warnings.warn(
            f"{warn}: `features` are not L2-normalised along the last dim (expected unit norm, "
            "e.g. torch.nn.functional.normalize(z, dim=-1)); pass check_inputs=False to skip this check",
            stacklevel=3,  # as before the move: check_values <- forward <- Module._call_impl
        )
    return bool(flags[1])


def check_labels(labels: Tensor, n: int, device: torch.device) -> Tensor:
    """Integer class labels ``(n,)`` moved to ``device``, else a ``ValueError`` naming ``labels``.

    Unlike :func:`exaug.utils.checks.check_labels` (``TypeError`` for dtypes), the losses keep SupContrast-style
    ``ValueError`` messages in backticks, which their users match on.
    """
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must have shape (batch,) = ({n},) to match `features`, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be an integer tensor (e.g. torch.int64), got {labels.dtype}")
    return labels.to(device)


def check_temperatures(temperature: float, base_temperature: float) -> None:
    """``ValueError`` unless both temperatures are > 0 (NaN included)."""
    if not temperature > 0 or not base_temperature > 0:
        raise ValueError(
            f"temperatures must be > 0, got temperature={temperature}, base_temperature={base_temperature}"
        )


def gather_contrast_set(enabled: bool, features: Tensor, *others: Optional[Tensor]) -> tuple:
    """The contrast set: the rows of every rank when ``enabled`` and distributed, else the local rows.

    Args:
        enabled: the loss's ``gather_distributed`` flag.
        features: ``(n, n_views, dim)`` local embeddings.
        *others: per-row tensors gathered alongside (labels, background flags); ``None`` stays ``None``.

    Returns:
        ``(offset, features_all, *others_all)``: ``offset`` is the index of local row 0 in the gathered rows
        (0 when not gathering); ``features_all`` is ``(m, n_views, dim)`` with gradients flowing back per rank.
    """
    if not (enabled and dist.is_distributed()):
        return (0, features, *others)
    sizes = dist.gather_sizes(features.shape[0], features.device)
    offset = sum(sizes[: dist.rank()])
    return (offset, dist.gather(features, sizes), *(None if o is None else dist.gather(o, sizes) for o in others))
