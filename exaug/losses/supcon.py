"""Supervised contrastive loss (Khosla et al., 2020) with the interface and semantics of SupContrast."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .functional import (
    check_features, check_labels, check_no_positive, check_temperatures, check_values, contrastive_loss,
    gather_contrast_set,
)

__all__ = ["SupConLoss", "contrastive_loss"]


class SupConLoss(nn.Module):
    """Supervised contrastive loss; SimCLR's NT-Xent when neither labels nor mask is given.

    Drop-in for SupContrast's ``SupConLoss``: same arguments, entry layout and scaling. Every view of every
    sample is an entry; for an anchor ``i``, positives ``P(i)`` are the entries of samples positive to it (same
    label / ``mask`` / same sample) except ``i`` itself, and the denominator runs over all entries but ``i``,
    positives included::

        L_i = -(t / base_t) / |P(i)| * sum_{p in P(i)} log( exp(e_i.e_p / t) / sum_{a != i} exp(e_i.e_a / t) )

    An anchor without any positive (possible with ``n_views=1``, a custom ``mask`` or ``contrast_mode="one"``
    with singleton labels) has ``L_i = 0``. By default (``no_positive="zero"``) it is counted in the mean, exactly
    as SupContrast's current ``losses.py`` does (older versions returned NaN); ``no_positive="exclude"`` leaves it
    out of the mean, as pytorch-metric-learning does. When every anchor has a positive, which is always the case
    with ``n_views >= 2`` and ``contrast_mode="all"``, the two agree. If no anchor has a positive the loss is a
    zero that still carries a (zero) gradient; so is an empty batch.

    Args:
        temperature: ``t``, divides the cosine similarities.
        contrast_mode: ``"all"``: every view is an anchor; ``"one"``: only view 0 is (contrast set unchanged).
        base_temperature: the loss is scaled by ``t / base_t`` (1 with the defaults; SupContrast's habit).
        gather_distributed: use the embeddings of all ranks as contrast set (anchors stay local), with
            gradients flowing back to each rank. With DDP (which averages gradients over ranks) this equals
            the single-process loss on the concatenated batch if every rank has the same number of anchors
            with a positive.
        check_inputs: check for NaN/inf (error) and non-normalised features (one warning), and that a float
            ``mask`` holds finite weights >= 0. Costs one host sync per call; disable in tight loops.
        no_positive: ``"zero"`` (SupContrast) or ``"exclude"`` (pytorch-metric-learning), see above.

    Shape:
        ``features`` ``(batch, n_views, dim)``, ``labels`` ``(batch,)`` or ``(batch, 1)``, ``mask``
        ``(batch, batch)`` -> ``()``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> features = F.normalize(torch.randn(4, 2, 16), dim=-1)  # 4 samples, 2 views each
        >>> criterion = SupConLoss(temperature=0.1)
        >>> supcon = criterion(features, torch.tensor([0, 1, 0, 1]))
        >>> simclr = criterion(features)  # positives: the other view of the same sample
        >>> bool(torch.isclose(simclr, criterion(features, mask=torch.eye(4))))
        True

        With one view and a singleton class, anchor 2 has no positive: a zero term of the mean by default.

        >>> one_view, labels = features[:3, :1], torch.tensor([0, 0, 1])
        >>> zero, exclude = SupConLoss(0.1)(one_view, labels), SupConLoss(0.1, no_positive="exclude")(one_view, labels)
        >>> bool(torch.isclose(zero, exclude * 2 / 3))
        True
    """

    def __init__(
        self,
        temperature: float = 0.07,
        contrast_mode: str = "all",
        base_temperature: float = 0.07,
        gather_distributed: bool = False,
        check_inputs: bool = True,
        no_positive: str = "zero",
    ) -> None:
        super().__init__()
        if contrast_mode not in ("all", "one"):
            raise ValueError(f"`contrast_mode` must be 'all' or 'one', got {contrast_mode!r}")
        check_temperatures(temperature, base_temperature)
        check_no_positive(no_positive)
        self.no_positive = no_positive
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
            labels: ``(batch,)`` or ``(batch, 1)`` class labels, integer or float holding whole numbers (as
                SupContrast accepts them); samples with equal labels are positives.
            mask: ``(batch, batch)`` custom positives (bool, or float weights as in SupContrast), ``mask[i, j]``
                says whether sample ``j`` is a positive of sample ``i``. With ``gather_distributed`` its columns
                index the gathered batch: shape ``(batch, global_batch)``, ranks in order. Exclusive with
                ``labels``; with neither, each sample's only positives are its own other views (SimCLR).
                Weights must be finite and >= 0 (checked with ``check_inputs``).

        Returns:
            Scalar loss.
        """
        check_features(features)
        if labels is not None and mask is not None:
            raise ValueError("pass either `labels` or `mask`, not both")
        n = features.shape[0]
        if labels is not None:
            labels = check_labels(labels, n, features.device)
        if self.check_inputs:
            warn = None if self._warned_norm else type(self).__name__
            checked_mask = mask if isinstance(mask, Tensor) else None
            self._warned_norm |= check_values(features, warn=warn, mask=checked_mask)

        offset, contrast, all_labels = gather_contrast_set(self.gather_distributed, features, labels)
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
            no_positive=self.no_positive,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, contrast_mode={self.contrast_mode!r}, "
            f"base_temperature={self.base_temperature}, gather_distributed={self.gather_distributed}, "
            f"no_positive={self.no_positive!r}"
        )
