"""exaug: explanation-driven augmentation for PyTorch.

Saliency backends selectable by name (:func:`create_explainer`), a batched masking transform that routes masked
views into positive or background-negative slots (:class:`ExplanationMaskAugment`), the SupCon / ExConB losses,
models, datasets and the reference trainer (:mod:`exaug.training`), and evaluation metrics (:mod:`exaug.metrics`).
"""

__version__ = "0.1.0"

from .augment import AugmentedBatch, ExplanationMaskAugment, SaliencyCache
from .data import ImageFolderZip, SyntheticShapes, TinyImageNet, build_dataset, list_datasets
from .explainers import (
    Explainer,
    Explanation,
    create_explainer,
    describe_explainers,
    list_explainers,
    register_explainer,
)
from .losses import ExConBLoss, SupConLoss
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
    "Classifier",
    "DeviceViewAugment",
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
    "create_encoder",
    "create_explainer",
    "create_model",
    "describe_explainers",
    "list_datasets",
    "list_explainers",
    "list_models",
    "register_explainer",
    "standard_view",
    "supcon_random_view",
    "unnormalize",
]
