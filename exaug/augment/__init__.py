"""Explanation-driven masking transforms."""

from .explanation_mask import AugmentedBatch, ExplanationMaskAugment
from .masking import FILLS, apply_mask, fill_like, gaussian_blur, keep_mask

__all__ = ["FILLS", "AugmentedBatch", "ExplanationMaskAugment", "apply_mask", "fill_like", "gaussian_blur", "keep_mask"]
