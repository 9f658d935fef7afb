"""exaug: explanation-driven augmentation for PyTorch.

Saliency backends selectable by name (:func:`create_explainer`), a batched masking transform that routes masked
views into positive or background-negative slots (:class:`ExplanationMaskAugment`) and the SupCon / ExConB losses.
"""

__version__ = "0.1.0"

from .augment import AugmentedBatch, ExplanationMaskAugment
from .explainers import (
    Explainer,
    Explanation,
    create_explainer,
    describe_explainers,
    list_explainers,
    register_explainer,
)

__all__ = [
    "AugmentedBatch",
    "Explainer",
    "Explanation",
    "ExplanationMaskAugment",
    "__version__",
    "create_explainer",
    "describe_explainers",
    "list_explainers",
    "register_explainer",
]
