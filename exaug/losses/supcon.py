"""Supervised contrastive loss (Khosla et al., 2020) with the interface and semantics of SupContrast.

This module also holds the math shared with :class:`~exaug.losses.ExConBLoss`: input checks, the (optional)
cross-rank gather of the contrast set and :func:`contrastive_loss`, the masked log-probability loss.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from ..utils import dist

__all__ = ["SupConLoss", "contrastive_loss"]


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
    """
    n, n_views, dim = features.shape
    m = contrast.shape[0]
    anchor_views = n_views if anchor_views is None else anchor_views
    device = features.device

    anchors = features[:, :anchor_views].transpose(0, 1).reshape(-1, dim)  # (anchor_views * n, dim)
    entries = contrast.transpose(0, 1).reshape(-1, dim)  # (n_views * m, dim)
    logits = anchors @ entries.T / temperature

    # An anchor's own entry: same view, sample offset + k. Block-diagonal over views of a shifted identity.
    same_sample = (torch.arange(n, device=device) + offset)[:, None] == torch.arange(m, device=device)
    same_view = torch.arange(anchor_views, device=device)[:, None] == torch.arange(n_views, device=device)
    is_self = (same_view[:, None, :, None] & same_sample[None, :, None, :]).reshape(anchors.shape[0], -1)

    pos = positives.to(logits.dtype).repeat(anchor_views, n_views).masked_fill(is_self, 0)
    if weights is None:
        weights = torch.ones(n_views, m, dtype=logits.dtype, device=device)
    denom = weights.to(logits.dtype).reshape(1, -1).expand_as(logits).masked_fill(is_self, 0)

    n_pos = pos.sum(1)
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


def _check_features(features: Tensor) -> None:
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"`features` must have shape (batch, n_views, dim), got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"`features` must be a floating-point tensor, got {features.dtype}")


def _is_compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def _check_values(module: nn.Module, features: Tensor) -> None:
    """NaN/inf -> error; not L2-normalised -> one warning per module. One host sync for both."""
    if features.numel() == 0 or torch.jit.is_scripting() or _is_compiling():
        return
    x = features.detach()
    tol = max(1e-3, 10 * torch.finfo(x.dtype).eps)
    flags = torch.stack([~torch.isfinite(x).all(), ((x.norm(dim=-1) - 1).abs() > tol).any()]).tolist()
    if flags[0]:
        raise ValueError("`features` contains NaN or inf")
    if flags[1] and not module._warned_norm:
        module._warned_norm = True
        warnings.warn(
            f"{type(module).__name__}: `features` are not L2-normalised along the last dim (expected unit norm, "
            "e.g. torch.nn.functional.normalize(z, dim=-1)); pass check_inputs=False to skip this check",
            stacklevel=3,
        )


def _check_labels(labels: Tensor, n: int, device: torch.device) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must have shape (batch,) = ({n},) to match `features`, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be an integer tensor (e.g. torch.int64), got {labels.dtype}")
    return labels.to(device)


def _check_temperatures(temperature: float, base_temperature: float) -> None:
    if not temperature > 0 or not base_temperature > 0:
        raise ValueError(
            f"temperatures must be > 0, got temperature={temperature}, base_temperature={base_temperature}"
        )


def _gather(enabled: bool, features: Tensor, *others: Optional[Tensor]) -> tuple:
    """``(offset, features_all, *others_all)``: the global contrast set when ``enabled`` and distributed."""
    if not (enabled and dist.is_distributed()):
        return (0, features, *others)
    sizes = dist.gather_sizes(features.shape[0], features.device)
    offset = sum(sizes[: dist.rank()])
    return (offset, dist.gather(features, sizes), *(None if o is None else dist.gather(o, sizes) for o in others))


# ---------------------------------------------------------------------------------------------- the loss


class SupConLoss(nn.Module):
    """Supervised contrastive loss; SimCLR's NT-Xent when neither labels nor mask is given.

    Drop-in for SupContrast's ``SupConLoss``: same arguments, entry layout and scaling. Every view of every
    sample is an entry; for an anchor ``i``, positives ``P(i)`` are the entries of samples positive to it (same
    label / ``mask`` / same sample) except ``i`` itself, and the denominator runs over all entries but ``i``,
    positives included::

        L_i = -(t / base_t) / |P(i)| * sum_{p in P(i)} log( exp(e_i.e_p / t) / sum_{a != i} exp(e_i.e_a / t) )

    The loss is the mean of ``L_i`` over anchors with at least one positive. Anchors without any positive
    contribute nothing and are left out of the mean (SupContrast's current code counts them as zeros in the
    mean; older versions returned NaN); when every anchor has a positive, which is always the case with
    ``n_views >= 2``, the two conventions agree. If no anchor has a positive the loss is a zero that still
    carries a (zero) gradient.

    Args:
        temperature: ``t``, divides the cosine similarities.
        contrast_mode: ``"all"``: every view is an anchor; ``"one"``: only view 0 is (contrast set unchanged).
        base_temperature: the loss is scaled by ``t / base_t`` (1 with the defaults; SupContrast's habit).
        gather_distributed: use the embeddings of all ranks as contrast set (anchors stay local), with
            gradients flowing back to each rank. With DDP (which averages gradients over ranks) this equals
            the single-process loss on the concatenated batch if every rank has the same number of anchors
            with a positive.
        check_inputs: check for NaN/inf (error) and non-normalised features (one warning). Costs one host
            sync per call; disable in tight loops.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        contrast_mode: str = "all",
        base_temperature: float = 0.07,
        gather_distributed: bool = False,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if contrast_mode not in ("all", "one"):
            raise ValueError(f"`contrast_mode` must be 'all' or 'one', got {contrast_mode!r}")
        _check_temperatures(temperature, base_temperature)
        self.temperature = temperature
        self.contrast_mode = contrast_mode
        self.base_temperature = base_temperature
        self.gather_distributed = gather_distributed
        self.check_inputs = check_inputs
        self._warned_norm = False

    def forward(self, features: Tensor, labels: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            features: ``(batch, n_views, dim)`` L2-normalised embeddings.
            labels: ``(batch,)`` integer class labels; samples with equal labels are positives.
            mask: ``(batch, batch)`` custom positives (bool, or float weights as in SupContrast), ``mask[i, j]``
                says whether sample ``j`` is a positive of sample ``i``. With ``gather_distributed`` its columns
                index the gathered batch: shape ``(batch, global_batch)``, ranks in order. Exclusive with
                ``labels``; with neither, each sample's only positives are its own other views (SimCLR).

        Returns:
            Scalar loss.
        """
        _check_features(features)
        if labels is not None and mask is not None:
            raise ValueError("pass either `labels` or `mask`, not both")
        n = features.shape[0]
        if labels is not None:
            labels = _check_labels(labels, n, features.device)
        if self.check_inputs:
            _check_values(self, features)

        offset, contrast, all_labels = _gather(self.gather_distributed, features, labels)
        m = contrast.shape[0]
        if labels is not None:
            positives = labels[:, None] == all_labels[None, :]
        elif mask is not None:
            if not isinstance(mask, Tensor) or mask.shape != (n, m):
                shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(f"`mask` must have shape (batch, batch) = ({n}, {m}), got {shape}")
            positives = mask.to(features.device)
        else:
            positives = (torch.arange(n, device=features.device) + offset)[:, None] == torch.arange(
                m, device=features.device
            )
        return contrastive_loss(
            features,
            contrast,
            positives,
            offset=offset,
            anchor_views=features.shape[1] if self.contrast_mode == "all" else 1,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, contrast_mode={self.contrast_mode!r}, "
            f"base_temperature={self.base_temperature}, gather_distributed={self.gather_distributed}"
        )
