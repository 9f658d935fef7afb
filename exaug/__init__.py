"""exaug: explanation-driven augmentation for PyTorch.

Saliency backends selectable by name (:func:`create_explainer`, :func:`list_explainers`, :func:`resolve_explainer`),
a batched masking transform that routes masked views into positive or background-negative slots
(:class:`ExplanationMaskAugment`) and the EDDA occlusion augment (:class:`EDDAAugment`), the SupCon / ExConB / CGC
losses, models, datasets and the reference trainer (:mod:`exaug.training`), and evaluation metrics
(:mod:`exaug.metrics`). :mod:`exaug.testing` checks that explanation code leaves a model untouched.
"""

__version__ = "0.1.0"

from .augment import AugmentedBatch, EDDAAugment, ExplanationMaskAugment, SaliencyCache
from .data import ImageFolderZip, SyntheticShapes, TinyImageNet, build_dataset, list_datasets
from .explainers import (
    Explainer,
    Explanation,
    create_explainer,
    describe_explainers,
    explainer_accepts,
    is_explainer,
    list_explainers,
    normalize_saliency,
    register_explainer,
    resolve_explainer,
)
from .losses import CGCLoss, ExConBLoss, SupConLoss, cgc_heatmaps
from .models import Classifier, LinearClassifier, SupConModel, create_encoder, create_model, list_models
from .transforms import (
    DeviceViewAugment,
    ExConTransform,
    TwoCropTransform,
    standard_view,
    supcon_random_view,
    unnormalize,
)

__all__ = [
    "AugmentedBatch",
    "CGCLoss",
    "Classifier",
    "DeviceViewAugment",
    "EDDAAugment",
    "ExConBLoss",
    "ExConTransform",
    "Explainer",
    "Explanation",
    "ExplanationMaskAugment",
    "ImageFolderZip",
    "LinearClassifier",
    "SaliencyCache",
    "SupConLoss",
    "SupConModel",
    "SyntheticShapes",
    "TinyImageNet",
    "TwoCropTransform",
    "__version__",
    "build_dataset",
    "cgc_heatmaps",
    "create_encoder",
    "create_explainer",
    "create_model",
    "describe_explainers",
    "explainer_accepts",
    "is_explainer",
    "list_datasets",
    "list_explainers",
    "list_models",
    "normalize_saliency",
    "register_explainer",
    "resolve_explainer",
    "standard_view",
    "supcon_random_view",
    "unnormalize",
]
