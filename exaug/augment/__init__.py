"""Explanation-driven masking transforms, their saliency cache, EDDA occlusions, replayable spatial transforms and
the saliency-guided mixing family (CutMix/Mixup baselines, SaliencyMix, KeepAugment, Attentive CutMix, SnapMix, SGT)."""

from .edda import EDDA_POLICIES, EDDA_TARGETS, EDDAAugment, EDDABatch, EDDAParams
from .explaining import ExplainerSource, explain_normalized
from .explanation_mask import AugmentedBatch, ExplanationMaskAugment, MaskParams
from .kornia_ops import SaliencyKeep
from .masking import FILLS, apply_mask, check_fill, fill_like, gaussian_blur, keep_mask
from .reference import REFERENCE_EXPLAINER, explainer_preset_options, reference_explainer_options
from .replay import ReplayableSpatial, SpatialParams
from .saliency_cache import SaliencyCache
from .mixing import MixAugment, MixedBatch, MixParams, SaliencySource
from .cutmix import CutMix, Mixup
from .saliencymix import SaliencyMix
from .attentive_cutmix import AttentiveCutMix
from .snapmix import SnapMix
from .keepaugment import KeepAutoAugment, KeepCutout
from .sgt import SaliencyGuidedMask, sgt_loss

__all__ = [
    "EDDA_POLICIES",
    "EDDA_TARGETS",
    "FILLS",
    "REFERENCE_EXPLAINER",
    "AugmentedBatch",
    "EDDAAugment",
    "EDDABatch",
    "EDDAParams",
    "ExplainerSource",
    "ExplanationMaskAugment",
    "MaskParams",
    "ReplayableSpatial",
    "SaliencyCache",
    "SaliencyKeep",
    "SpatialParams",
    "apply_mask",
    "check_fill",
    "explain_normalized",
    "explainer_preset_options",
    "fill_like",
    "gaussian_blur",
    "keep_mask",
    # the mixing family (issue #14)
    "AttentiveCutMix",
    "CutMix",
    "KeepAutoAugment",
    "KeepCutout",
    "MixAugment",
    "MixParams",
    "MixedBatch",
    "Mixup",
    "SaliencyGuidedMask",
    "SaliencyMix",
    "SaliencySource",
    "SnapMix",
    "sgt_loss",
    "reference_explainer_options",
]
