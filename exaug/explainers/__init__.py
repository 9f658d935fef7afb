"""Saliency backends selectable by name: ``create_explainer("gradcam", model)``.

Importing this package registers every built-in backend; heavy third-party libraries are imported only when a
backend that needs them is created.
"""

from .base import Explainer, Explanation, normalize_saliency, resolve_layer
from .registry import (
    create_explainer,
    describe_explainers,
    explainer_accepts,
    explainer_uses_layer,
    list_explainers,
    register_explainer,
)
from . import gradcam  # noqa: F401  (registers "gradcam", "random")
from . import captum_backends, pgc  # noqa: F401  (register the Captum and "pgc.*" backends)
from . import rise  # noqa: F401
from .gradcam import GradCAM, grad_cam

__all__ = [
    "Explainer",
    "Explanation",
    "GradCAM",
    "create_explainer",
    "describe_explainers",
    "explainer_accepts",
    "explainer_uses_layer",
    "grad_cam",
    "list_explainers",
    "normalize_saliency",
    "register_explainer",
    "resolve_layer",
]
