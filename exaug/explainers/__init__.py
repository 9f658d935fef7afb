"""Saliency backends selectable by name: ``create_explainer("gradcam", model)``.

Importing this package registers every built-in backend; heavy third-party libraries are imported only when a
backend that needs them is created. ``list_explainers("pgc.*")`` filters names with wildcards,
``is_explainer(name)`` tests one, and :func:`resolve_explainer` turns a name, an :class:`Explainer` or a plain
callable into something to call as ``f(images, targets)``.
"""

from .base import Explainer, Explanation, normalize_saliency, resolve_layer, targets_or_predicted
from .layers import find_default_cam_layer, to_feature_map, unwrap_model
from .registry import (
    ExplainerSpec,
    create_explainer,
    describe_explainers,
    explainer_accepts,
    explainer_uses_layer,
    is_explainer,
    list_explainers,
    register_explainer,
    resolve_explainer,
    unregister_explainer,
)
from . import cam  # noqa: F401  (registers the native CAM family: "gradcam", "gradcam++", ..., "eigencam")
from . import gradcam  # noqa: F401  (registers "random")
from . import captum_backends, pgc  # noqa: F401  (register the Captum and "pgc.*" backends)
from . import rise  # noqa: F401
from . import spectral_residual  # noqa: F401  (registers "spectral_residual", model-free)
from .cam import CAMExplainer, layer_activation_and_gradient
from .gradcam import GradCAM, grad_cam

__all__ = [
    "CAMExplainer",
    "Explainer",
    "ExplainerSpec",
    "Explanation",
    "GradCAM",
    "create_explainer",
    "describe_explainers",
    "explainer_accepts",
    "explainer_uses_layer",
    "find_default_cam_layer",
    "grad_cam",
    "is_explainer",
    "layer_activation_and_gradient",
    "list_explainers",
    "normalize_saliency",
    "register_explainer",
    "resolve_explainer",
    "resolve_layer",
    "targets_or_predicted",
    "to_feature_map",
    "unregister_explainer",
    "unwrap_model",
]
