"""Contrastive losses: :class:`SupConLoss` (SupCon / SimCLR) and :class:`ExConBLoss` (SupCon with background rows)."""

from .exconb import ExConBLoss
from .supcon import SupConLoss

__all__ = ["ExConBLoss", "SupConLoss"]
