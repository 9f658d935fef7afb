"""Explanation-driven masking transforms, their saliency cache, EDDA occlusions and replayable spatial transforms."""

from .edda import EDDA_POLICIES, EDDA_TARGETS, EDDAAugment, EDDABatch
from .explanation_mask import AugmentedBatch, ExplanationMaskAugment
from .masking import FILLS, apply_mask, fill_like, gaussian_blur, keep_mask
from .replay import ReplayableSpatial, SpatialParams
from .saliency_cache import SaliencyCache

__all__ = [
    "EDDA_POLICIES",
    "EDDA_TARGETS",
    "FILLS",
    "AugmentedBatch",
    "EDDAAugment",
    "EDDABatch",
    "ExplanationMaskAugment",
    "ReplayableSpatial",
    "SaliencyCache",
    "SpatialParams",
    "apply_mask",
    "fill_like",
    "gaussian_blur",
    "keep_mask",
]
