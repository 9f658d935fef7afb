"""Losses: :class:`SupConLoss` (SupCon / SimCLR), :class:`ExConBLoss` (SupCon with background rows) and
:class:`CGCLoss` (contrastive Grad-CAM consistency, with :func:`cgc_heatmaps`). The contrastive core both SupCon
losses are built from is public in :mod:`exaug.losses.functional`."""

from .cgc import CGCLoss, cgc_heatmaps
from .exconb import ExConBLoss
from .functional import contrastive_loss
from .supcon import SupConLoss

__all__ = ["CGCLoss", "ExConBLoss", "SupConLoss", "cgc_heatmaps", "contrastive_loss"]
