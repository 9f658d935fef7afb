"""Losses: :class:`SupConLoss` (SupCon / SimCLR), :class:`ExConBLoss` (SupCon with background rows) and
:class:`CGCLoss` (contrastive Grad-CAM consistency, with :func:`cgc_heatmaps`)."""

from .cgc import CGCLoss, cgc_heatmaps
from .exconb import ExConBLoss
from .supcon import SupConLoss

__all__ = ["CGCLoss", "ExConBLoss", "SupConLoss", "cgc_heatmaps"]
