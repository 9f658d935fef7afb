"""exaug: explanation-driven augmentation for PyTorch.

Saliency backends selectable by name (:func:`create_explainer`, :func:`list_explainers`, :func:`resolve_explainer`),
a batched masking transform that routes masked views into positive or background-negative slots
(:class:`ExplanationMaskAugment`) and the EDDA occlusion augment (:class:`EDDAAugment`), the SupCon / ExConB / CGC
losses, models, datasets and the reference trainer (:mod:`exaug.training`), and evaluation metrics
(:mod:`exaug.metrics`). :mod:`exaug.testing` checks that explanation code leaves a model untouched.

The names below are imported on first use (PEP 562), so ``import exaug`` is instant and does not load torch: the
``exaug`` command relies on that to set OpenMP's environment before torch starts (:mod:`exaug.cli`).

Example:
    >>> import exaug
    >>> "gradcam" in exaug.list_explainers("grad*")
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the subpackage that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("AugmentedBatch", "EDDAAugment", "ExplanationMaskAugment", "SaliencyCache"), "augment"),
    **dict.fromkeys(("ImageFolderZip", "SyntheticShapes", "TinyImageNet", "build_dataset", "list_datasets"), "data"),
    **dict.fromkeys(
        ("Explainer", "Explanation", "create_explainer", "describe_explainers", "explainer_accepts", "is_explainer",
         "list_explainers", "normalize_saliency", "register_explainer", "resolve_explainer"),
        "explainers",
    ),
    **dict.fromkeys(("CGCLoss", "ExConBLoss", "SupConLoss", "cgc_heatmaps"), "losses"),
    **dict.fromkeys(
        ("Classifier", "LinearClassifier", "SupConModel", "create_encoder", "create_model", "list_models"), "models"
    ),
    **dict.fromkeys(
        ("DeviceViewAugment", "ExConTransform", "TwoCropTransform", "standard_view", "supcon_random_view",
         "unnormalize"),
        "transforms",
    ),
}
#: Subpackages reachable as attributes (``exaug.metrics.ECE``) without importing them first.
_SUBMODULES = ("augment", "cli", "data", "evaluation", "explainers", "losses", "metrics", "models", "targets",
               "testing", "training", "transforms", "utils")

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


if TYPE_CHECKING:  # what static analysers and IDEs see: the same names, imported eagerly
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
