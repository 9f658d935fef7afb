"""ExConB loss (ExCon with background negatives): SupCon where some rows only ever appear in denominators.

In ExConB training, a saliency-masked image whose masked version the classifier gets wrong is appended to the
batch as a *background* row: it is a negative for every anchor, but never an anchor and never a positive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import (
    check_features, check_labels, check_no_positive, check_temperatures, check_values, contrastive_loss,
    gather_contrast_set,
)

__all__ = ["ExConBLoss"]


class ExConBLoss(nn.Module):
    """Supervised contrastive loss with background rows that only enter the denominators.

    Every view of every non-background row is an anchor. For anchor ``i``, positives ``P(i)`` are the entries
    of non-background rows with the same label, except ``i`` itself (the other views of its own row count);
    the denominator ``A(i)`` holds every other entry, background ones included::

        L_i = -(t / base_t) / |P(i)| * sum_{p in P(i)} log( exp(e_i.e_p / t) / sum_{a in A(i)} w_a exp(e_i.e_a / t) )

    with ``w_a = background_weight`` for background entries and 1 otherwise. The loss is the mean over the
    non-background anchors; one without any positive (``n_views=1`` and a singleton label) is a zero term of
    the mean by default (``no_positive="zero"``, as SupContrast) or left out (``"exclude"``). A batch without
    anchors (every row background, or ``B = 0``) gives a zero carrying a zero gradient. Without background rows
    this is exactly :class:`SupConLoss` with labels and the same ``no_positive``.

    Args:
        temperature: ``t``.
        base_temperature: the loss is scaled by ``t / base_t``.
        gather_distributed: contrast against the rows (and labels / background flags) of all ranks; anchors
            stay local. With DDP this equals the single-process loss on the concatenated batch when every rank
            has the same number of non-background anchors with a positive (background counts may differ).
        background_weight: ``w`` of each counted background entry in the denominator (finite, >= 0).
        background_copies: ``"all"`` (default, as in the paper, which appends the masked image twice "to make
            up a pair"): every view of a background row is a denominator entry, so it counts ``n_views`` times;
            ``"one"``: only its view-0 entry counts. With identical views, ``"all"`` and
            ``background_weight=1/n_views`` equals ``"one"`` with weight 1.
        check_inputs: check for NaN/inf (error) and non-normalised features (one warning); one host sync.
        no_positive: ``"zero"`` (SupContrast) or ``"exclude"``, as in :class:`SupConLoss`.

    Shape:
        ``features`` ``(batch, n_views, dim)``, ``labels`` ``(batch,)``, ``background`` ``(batch,)`` -> ``()``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from exaug.losses import SupConLoss
        >>> features = F.normalize(torch.randn(5, 2, 16), dim=-1)
        >>> labels = torch.tensor([0, 1, 0, 1, 1])
        >>> background = torch.tensor([False, False, False, False, True])  # row 4: a wrongly classified mask
        >>> loss = ExConBLoss()(features, labels, background)
        >>> no_background = ExConBLoss()(features[:4], labels[:4], background[:4])
        >>> bool(torch.isclose(no_background, SupConLoss()(features[:4], labels[:4])))
        True
    """

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        gather_distributed: bool = False,
        background_weight: float = 1.0,
        background_copies: str = "all",
        check_inputs: bool = True,
        no_positive: str = "zero",
    ) -> None:
        super().__init__()
        check_temperatures(temperature, base_temperature)
        check_no_positive(no_positive)
        if background_copies not in ("all", "one"):
            raise ValueError(f"`background_copies` must be 'all' or 'one', got {background_copies!r}")
        # inf would make every denominator infinite (a constant loss); NaN fails `>= 0`.
        if not background_weight >= 0 or math.isinf(background_weight):
            raise ValueError(f"`background_weight` must be a finite number >= 0, got {background_weight}")
        self.no_positive = no_positive
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.gather_distributed = gather_distributed
        self.background_weight = float(background_weight)
        self.background_copies = background_copies
        self.check_inputs = check_inputs
        self._warned_norm = False

    def forward(self, features: Tensor, labels: Tensor, background: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            features: ``(batch, n_views, dim)`` L2-normalised embeddings, background rows included.
            labels: ``(batch,)`` or ``(batch, 1)`` labels, integer or whole-number floats (ignored for background
                rows).
            background: ``(batch,)`` bool, ``True`` for background rows.

        Returns:
            Scalar loss.
        """
        check_features(features)
        n, n_views = features.shape[:2]
        labels = check_labels(labels, n, features.device)
        if not isinstance(background, Tensor) or background.dtype != torch.bool or background.shape != (n,):
            is_tensor = isinstance(background, Tensor)
            desc = f"{background.dtype} {tuple(background.shape)}" if is_tensor else type(background).__name__
            raise ValueError(f"`background` must be a bool tensor of shape (batch,) = ({n},), got {desc}")
        background = background.to(features.device)
        if self.check_inputs:
            self._warned_norm |= check_values(features, warn=None if self._warned_norm else type(self).__name__)

        # contrast (m, n_views, dim); all_labels, all_background (m,): this rank's rows start at `offset`.
        offset, contrast, all_labels, all_background = gather_contrast_set(
            self.gather_distributed, features, labels, background
        )
        # Background rows are never positives (columns) and never anchors (rows).
        positives = (labels[:, None] == all_labels[None, :]) & ~all_background[None, :] & ~background[:, None]
        # Denominator weight per (view, sample) entry: 1 for ordinary rows; background rows get
        # background_weight on the views that count (all of them, or view 0 only) and 0 elsewhere.
        bg_view_weight = torch.full((n_views, 1), self.background_weight, dtype=features.dtype, device=features.device)
        if self.background_copies == "one":
            bg_view_weight[1:] = 0
        weights = torch.where(all_background[None, :], bg_view_weight, torch.ones_like(bg_view_weight))
        return contrastive_loss(
            features,
            contrast,
            positives,
            weights,
            offset=offset,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            no_positive=self.no_positive,
            anchor_rows=~background,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
            f"gather_distributed={self.gather_distributed}, background_weight={self.background_weight}, "
            f"background_copies={self.background_copies!r}, no_positive={self.no_positive!r}"
        )
