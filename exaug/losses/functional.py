"""The contrastive core behind :class:`~exaug.losses.SupConLoss` and :class:`~exaug.losses.ExConBLoss`.

:func:`contrastive_loss` is the masked log-probability loss both are made of; the checks validate their inputs
with the same messages, and :func:`gather_contrast_set` builds the cross-rank contrast set. Everything here is a
plain function (no module state), so other losses can be built from it.
"""

from __future__ import annotations

import math
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
    "check_no_positive",
    "gather_contrast_set",
    "NO_POSITIVE_MODES",
]

#: What an anchor without any positive contributes: ``"zero"`` (SupContrast's current ``losses.py``: a zero term
#: counted in the mean) or ``"exclude"`` (pytorch-metric-learning's reducer: left out of the mean).
NO_POSITIVE_MODES = ("zero", "exclude")


def contrastive_loss(
    features: Tensor,
    contrast: Tensor,
    positives: Tensor,
    weights: Optional[Tensor] = None,
    offset: int = 0,
    anchor_views: Optional[int] = None,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    no_positive: str = "exclude",
    anchor_rows: Optional[Tensor] = None,
) -> Tensor:
    """Masked supervised contrastive loss, the single implementation behind SupCon and ExConB.

    Entries are (view, sample) pairs laid out view-major, as in SupContrast. Anchor ``i`` is one of the first
    ``anchor_views`` views of a local sample; for each anchor

    ``L_i = -t/base_t * sum_p m_ip log( exp(s_ip) / sum_{a != i} w_a exp(s_ia) ) / sum_p m_ip``,  ``s = e.e / t``,

    where ``m`` is ``positives`` tiled over views with the anchor's own entry removed. An anchor whose positive
    weights sum to 0 has ``L_i = 0``; ``no_positive`` says whether it still counts in the mean.

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
        no_positive: ``"exclude"``: the mean runs over anchors with at least one positive (pytorch-metric-learning);
            ``"zero"``: anchors without a positive are zero terms counted in the mean (SupContrast). The two agree
            when every anchor has a positive.
        anchor_rows: ``(n,)`` bool, the local samples whose views are anchors at all (``None``: every sample).
            Rows that are not anchors (ExConB's background rows) must have no positives; they never count in the
            mean, whatever ``no_positive`` says.

    Returns:
        Scalar loss. If no anchor counts: a zero connected to ``features`` (its gradient is zero).

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
    check_no_positive(no_positive)
    n, n_views, dim = features.shape
    m = contrast.shape[0]
    anchor_views = n_views if anchor_views is None else anchor_views
    device = features.device
    if n == 0 or anchor_views == 0:
        # An empty batch (e.g. the last shard of a tiny dataset): a zero that still backpropagates, no NaN.
        return features.sum() * 0.0

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
    # The number of anchors counted in the mean stays a tensor (no host sync); 0 / 1 when there is none.
    if no_positive == "exclude":
        counted = has_pos.sum()
    elif anchor_rows is None:
        counted = torch.tensor(per_anchor.numel(), device=device)
    else:
        counted = anchor_rows.sum() * anchor_views
    return per_anchor.sum() / counted.clamp(min=1)


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


def check_values(features: Tensor, warn: str | None = None, mask: Optional[Tensor] = None) -> bool:
    """NaN/inf in ``features`` (or a bad ``mask``) -> ``ValueError``; tells whether the features are L2-normalised.

    One host sync for all the checks.

    Skipped (returns ``False``) for empty features and while scripting or compiling, where a host sync is not
    allowed.

    Args:
        features: ``(batch, n_views, dim)`` embeddings.
        warn: if given, the name of the caller (e.g. ``"SupConLoss"``) for a warning when the features are not
            unit-norm; the losses pass it only until they have warned once.
        mask: custom positive weights; NaN, inf or negative entries raise a ``ValueError`` naming ``mask``.

    Returns:
        ``True`` when some embedding's norm differs from 1 by more than ``max(1e-3, 10 eps)``.
    """
    if features.numel() == 0 or torch.jit.is_scripting() or _is_compiling():
        return False
    x = features.detach()
    tol = max(1e-3, 10 * torch.finfo(x.dtype).eps)
    checks = [~torch.isfinite(x).all(), ((x.norm(dim=-1) - 1).abs() > tol).any()]
    if mask is not None and mask.dtype != torch.bool and mask.numel():
        m = mask.detach()
        checks.append((~torch.isfinite(m) | (m < 0)).any().to(checks[0].device))
    flags = torch.stack(checks).tolist()
    if flags[0]:
        raise ValueError("`features` contains NaN or inf")
    if len(flags) > 2 and flags[2]:
        raise ValueError("`mask` must hold finite weights >= 0 (bool, or float as in SupContrast); it contains "
                         "negative, NaN or inf entries")
    if flags[1] and warn is not None:
        warnings.warn(
            f"{warn}: `features` are not L2-normalised along the last dim (expected unit norm, "
            "e.g. torch.nn.functional.normalize(z, dim=-1)); pass check_inputs=False to skip this check",
            stacklevel=3,  # as before the move: check_values <- forward <- Module._call_impl
        )
    return bool(flags[1])


def check_labels(labels: Tensor, n: int, device: torch.device) -> Tensor:
    """Class labels ``(n,)`` moved to ``device``, else a ``ValueError`` naming ``labels``.

    Accepted as SupContrast accepts them: integer labels of shape ``(n,)`` or ``(n, 1)``, and floating point
    labels holding whole numbers (cast to int64; checking that they are whole costs one host sync, paid only for
    float labels). Unlike :func:`exaug.utils.checks.check_labels` (``TypeError`` for dtypes), the losses keep
    SupContrast-style ``ValueError`` messages in backticks, which their users match on.

    Shape:
        ``(n,)`` or ``(n, 1)`` -> ``(n,)``.
    """
    if isinstance(labels, Tensor) and labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)  # SupContrast's `labels.contiguous().view(-1, 1)` accepts (bsz, 1)
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must have shape (batch,) = ({n},) to match `features`, got {shape}")
    if labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be an integer tensor (e.g. torch.int64), got {labels.dtype}")
    if labels.is_floating_point():
        if labels.numel() and not bool(torch.isfinite(labels).all() & (labels == labels.round()).all()):
            raise ValueError("`labels` must be an integer tensor (e.g. torch.int64) or hold whole numbers, got "
                             f"{labels.dtype} values that are not whole numbers (or not finite)")
        labels = labels.long()
    return labels.to(device)


def check_temperatures(temperature: float, base_temperature: float) -> None:
    """``ValueError`` naming the first bad one unless both temperatures are finite numbers > 0."""
    for name, value in (("temperature", temperature), ("base_temperature", base_temperature)):
        try:
            as_float = float(value)  # numbers, numpy scalars and one-element tensors (a learnable temperature)
        except (TypeError, ValueError, RuntimeError):
            as_float = math.nan
        # `not > 0` also rejects NaN; inf would turn every logit into 0 and the loss into a constant.
        if not as_float > 0 or math.isinf(as_float):
            raise ValueError(f"temperatures must be > 0 and finite, got `{name}`={value!r}")


def check_no_positive(no_positive: str) -> None:
    """``ValueError`` unless ``no_positive`` is one of :data:`NO_POSITIVE_MODES`."""
    if no_positive not in NO_POSITIVE_MODES:
        raise ValueError(f"`no_positive` must be 'zero' (SupContrast) or 'exclude', got {no_positive!r}")


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
