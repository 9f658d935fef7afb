"""The native, batched gradient-CAM family: one template, one formula per method, the classes generated from a table.

Every method runs the same machinery (:func:`layer_activation_and_gradient`): one forward with a hook on the
target layer, the part of the network before the layer without an autograd graph, and one ``torch.autograd.grad``
of the selected logits with respect to that layer's output only (no parameter gradients, no full backward), for the
whole batch with per-sample targets, on the images' device. Token and channels-last layers are read through
:func:`~exaug.explainers.layers.to_feature_map` (the gradient is taken w.r.t. the layer output and then read the
same way, as pytorch-grad-cam does). A method is then one formula from the ``(B, C, h, w)`` activation ``A`` and
gradient ``G`` to a ``(B, 1, h, w)`` map, transcribed from pytorch-grad-cam 1.5:

============================  ==================================================================  ========
name                          map (before the optional ReLU; sums over channels ``c``)             backward
============================  ==================================================================  ========
``gradcam``                   ``sum_c mean_hw(G) A``                                               yes
``gradcam++`` (``gradcampp``)  ``sum_c (sum_hw ReLU(G) a) A``, ``a = G^2 / (2 G^2 + sum_hw(A) G^3)``  yes
``xgradcam``                  ``sum_c (sum_hw G A / sum_hw A) A``                                  yes
``layercam``                  ``sum_c ReLU(G) A``                                                  yes
``hirescam``                  ``sum_c G A``                                                        yes
``gradcam_elementwise``       ``sum_c ReLU(G A)``                                                  yes
``eigencam``                  centred ``A`` (positions x channels) projected on its first right   no
                              singular vector (Gram eigh; sign: larger extreme positive)
============================  ==================================================================  ========

The ``pgc.*`` backends stay as cross-checks: each native method equals its pytorch-grad-cam class at the same
layer (tests, float64); for ``eigencam`` up to the SVD's sign, which pgc leaves to LAPACK and exaug fixes (see
:func:`eigencam_map`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.outputs import layer_tensor, logits_of, with_layer_tensor
from .base import Explainer, targets_or_predicted
from .layers import ReshapeTransform, layer_not_called_error, to_feature_map
from .registry import register_explainer

# __all__ (the machinery, the template and one class per row of the table) is set at the end of the module.

# The epsilons of pytorch-grad-cam's formulas (kept so that the maps are equal, not just close).
GRADCAM_PP_EPS = 1e-6
XGRADCAM_EPS = 1e-7


def layer_activation_and_gradient(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    layout: str = "auto",
    create_graph: bool = False,
    gradient: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """The target layer's feature map and the gradient of the selected logits w.r.t. it, for a whole batch.

    The model is run as it is (no mode switch, no isolation: :class:`CAMExplainer` adds those).

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, K)`` (or an output :func:`~exaug.utils.outputs.logits_of`
            reads: a mapping, ``ModelOutput`` or tuple).
        layer: a submodule of ``model``; its output is read by :func:`~exaug.explainers.layers.to_feature_map`.
        images: ``(B, C, H, W)``.
        targets: ``(B,)`` int64 classes, or ``None`` for the predicted classes.
        reshape_transform: callable from the layer output to ``(B, C', h, w)`` (overrides ``layout``).
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"``.
        create_graph: run the whole forward with a graph and keep the gradient's graph (second order, for CGC);
            the logits are then returned with their graph.
        gradient: ``False`` skips the backward (gradient-free methods): one forward under ``no_grad``.

    Returns:
        ``(activation, grad, logits, targets)``: ``(B, C', h, w)`` feature map, its gradient (same shape, or
        ``None``), ``(B, K)`` logits (detached unless ``create_graph``) and ``(B,)`` explained targets.

    Shape:
        ``images`` ``(B, C, H, W)`` -> ``(B, C', h, w)``, ``(B, C', h, w)``, ``(B, K)``, ``(B,)``.
    """
    store: dict[str, Tensor] = {}

    def keep_activation(module: nn.Module, inputs: Any, output: Any) -> Any:
        tensor = layer_tensor(output)  # element 0 of a tuple output (transformer blocks)
        if create_graph or not gradient:
            store["activation"] = tensor
            return None
        # The map needs gradients from the logits back to this layer only: the part of the network before it
        # ran without recording a graph, and the graph starts here (also works with frozen parameters).
        torch.set_grad_enabled(True)
        tensor = tensor.detach().requires_grad_(True)
        store["activation"] = tensor
        return with_layer_tensor(output, tensor)

    handle = layer.register_forward_hook(keep_activation)
    grad_mode = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(create_graph)
        logits = logits_of(model(images))
    finally:
        torch.set_grad_enabled(grad_mode)
        handle.remove()
    if "activation" not in store:
        raise layer_not_called_error(next((n for n, m in model.named_modules() if m is layer), "?"), layer)
    output = store["activation"]
    size = (images.shape[-2], images.shape[-1])
    activation = to_feature_map(output, reshape_transform, layout=layout, image_size=size)
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits of shape (B, K), got {tuple(logits.shape)}")
    targets = targets_or_predicted(logits.detach(), targets)
    if not gradient:
        return activation.detach(), None, logits.detach(), targets
    with torch.enable_grad():
        score = logits.gather(1, targets.unsqueeze(1)).sum()
        (grad,) = torch.autograd.grad(score, output, create_graph=create_graph)
        # The gradient is read like the output (a linear reading), exactly pytorch-grad-cam's semantics.
        grad = to_feature_map(grad, reshape_transform, layout=layout, image_size=size)
    if not create_graph:
        return activation.detach(), grad.detach(), logits.detach(), targets
    return activation, grad, logits, targets


# -- the formulas: (activation (B, C, h, w), gradient (B, C, h, w) or None) -> (B, 1, h, w) ------------------------


def _weighted(weights: Tensor, activation: Tensor) -> Tensor:
    """``sum_c w_c A_c`` for per-sample channel weights ``(B, C)``."""
    return torch.einsum("bc,bchw->bhw", weights, activation).unsqueeze(1)


def gradcam_map(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM: channel weights = spatial mean of the gradient."""
    return _weighted(grad.mean(dim=(2, 3)), activation)


def gradcam_pp_map(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM++ (Eq. 19 of Chattopadhay et al., as pytorch-grad-cam computes it)."""
    grad2 = grad.square()
    sum_activation = activation.sum(dim=(2, 3), keepdim=True)
    alpha = grad2 / (2 * grad2 + sum_activation * grad2 * grad + GRADCAM_PP_EPS)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    return _weighted((F.relu(grad) * alpha).sum(dim=(2, 3)), activation)


def xgradcam_map(activation: Tensor, grad: Tensor) -> Tensor:
    """XGrad-CAM: gradients weighted by the activation normalised by its spatial sum."""
    sum_activation = activation.sum(dim=(2, 3), keepdim=True)
    return _weighted((grad * activation / (sum_activation + XGRADCAM_EPS)).sum(dim=(2, 3)), activation)


def layercam_map(activation: Tensor, grad: Tensor) -> Tensor:
    """LayerCAM: positive gradients as element-wise weights."""
    return (F.relu(grad) * activation).sum(dim=1, keepdim=True)


def hirescam_map(activation: Tensor, grad: Tensor) -> Tensor:
    """HiResCAM: element-wise gradient x activation."""
    return (grad * activation).sum(dim=1, keepdim=True)


def gradcam_elementwise_map(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM element-wise: rectified element-wise gradient x activation."""
    return F.relu(grad * activation).sum(dim=1, keepdim=True)


def _first_right_singular_vector(matrix: Tensor) -> Tensor:
    """First right singular vector ``(B, C)`` of each ``(n, C)`` matrix, up to its sign.

    Only the top one is needed, so it is the top eigenvector of the smaller Gram matrix (``C x C``, or ``n x n``
    mapped back through ``A^T u``). For a batch of 64 CIFAR images on 2 CPU cores that takes 1 ms instead of the
    full SVD's 15 ms at layer4 (16 x 512 matrices), and 40 ms instead of 130 ms at layer2 (256 x 128). For a zero
    matrix the vector is zero (``n < C``) or an arbitrary unit vector (``C <= n``); either way the projection on it,
    the map, is zero.
    """
    n, c = matrix.shape[-2:]
    if c <= n:
        return torch.linalg.eigh(matrix.transpose(1, 2) @ matrix)[1][..., -1]  # (B, C)
    u = torch.linalg.eigh(matrix @ matrix.transpose(1, 2))[1][..., -1:]  # (B, n, 1)
    v = (matrix.transpose(1, 2) @ u).squeeze(-1)  # (B, C): sigma_1 * v_1
    return v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def eigencam_map(activation: Tensor, grad: Tensor | None = None) -> Tensor:
    """Eigen-CAM: projection of the centred activations on their first principal direction (batched).

    As pytorch-grad-cam: NaN activations count as 0 and the ``(h*w, C)`` matrix is centred over positions. The sign
    of a singular vector is arbitrary: pgc's ``EigenCAM`` keeps whatever numpy's LAPACK returns, and torch's LAPACK
    returns the other sign for some shapes, which the ReLU then turns into a different map. Here the sign is fixed
    deterministically as in Seg-Eigen-CAM (pgc's ``get_2d_projection_with_sign_correction``): flipped when
    ``|min| > |max|``, so the larger extreme is positive.
    """
    b, c, h, w = activation.shape
    matrix = activation.nan_to_num(0.0, 0.0, 0.0).flatten(2).transpose(1, 2)  # (B, hw, C)
    matrix = matrix - matrix.mean(dim=1, keepdim=True)
    projection = (matrix @ _first_right_singular_vector(matrix).unsqueeze(-1)).squeeze(-1)  # (B, hw)
    lo, hi = torch.aminmax(projection, dim=1, keepdim=True)
    projection = torch.where(lo.abs() > hi.abs(), -projection, projection)
    return projection.view(b, 1, h, w)


# -- the template ----------------------------------------------------------------------------------------------


class CAMExplainer(Explainer):
    """Template of the native CAM family (not registered itself; subclasses set ``formula``).

    Args:
        model: maps images to logits.
        target_layer: dotted path or module; default: see :func:`~exaug.explainers.layers.find_default_cam_layer`.
        reshape_transform: callable from the layer output to ``(B, C, h, w)`` (ViT tokens etc.); default: automatic.
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"`` (see :func:`~exaug.explainers.layers.to_feature_map`).
        relu: ReLU on the map (default True, as pytorch-grad-cam); ``False`` keeps the signed map.
    """

    uses_layer = True
    #: ``(activation, gradient) -> (B, 1, h, w)``; the gradient is ``None`` when ``uses_gradients`` is False.
    formula: Callable[..., Tensor]
    uses_gradients: bool = True

    def __init__(
        self,
        model: nn.Module,
        *,
        target_layer: str | nn.Module | None = None,
        reshape_transform: ReshapeTransform | None = None,
        layout: str = "auto",
        relu: bool = True,
    ) -> None:
        super().__init__(model, target_layer=target_layer, reshape_transform=reshape_transform, layout=layout)
        self.relu = bool(relu)

    def cam(self, images: Tensor, targets: Tensor | None = None, *, create_graph: bool = False
            ) -> tuple[Tensor, Tensor, Tensor]:
        """Raw maps at the layer's resolution, on the model as it is (no isolation, no normalisation).

        Returns:
            ``(cam, logits, targets)``: ``(B, 1, h, w)``, ``(B, K)``, ``(B,)``.
        """
        assert self.layer is not None, "the target layer is chosen on the first explain() call"
        activation, grad, logits, targets = layer_activation_and_gradient(
            self.model, self.layer, images, targets, reshape_transform=self.reshape_transform, layout=self.layout,
            create_graph=create_graph, gradient=self.uses_gradients,
        )
        maps = type(self).formula(activation, grad)
        return (F.relu(maps) if self.relu else maps), logits, targets

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        maps, logits, targets = self.cam(images, targets)
        return maps.detach(), logits, targets

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


# -- the table -------------------------------------------------------------------------------------------------


class _Method(NamedTuple):
    """One row of :data:`_METHODS`."""

    names: tuple[str, ...]  # registry name, then aliases
    class_name: str
    formula: Callable[..., Tensor]
    description: str  # one line for ``exaug explainers``
    uses_gradients: bool = True


_METHODS: tuple[_Method, ...] = (
    _Method(("gradcam",), "GradCAM", gradcam_map,
            "Grad-CAM, native batched torch (one forward, gradient w.r.t. the layer only); option relu=False"),
    _Method(("gradcam++", "gradcampp"), "GradCAMPlusPlus", gradcam_pp_map,
            "Grad-CAM++, native batched (weights: positive gradients x alpha from G^2, G^3, sum A)"),
    _Method(("xgradcam",), "XGradCAM", xgradcam_map,
            "XGrad-CAM, native batched (weights: sum G*A / sum A)"),
    _Method(("layercam",), "LayerCAM", layercam_map,
            "LayerCAM, native batched: sum_c ReLU(G) * A (usable on early layers)"),
    _Method(("hirescam",), "HiResCAM", hirescam_map,
            "HiResCAM, native batched: sum_c G * A"),
    _Method(("gradcam_elementwise",), "GradCAMElementWise", gradcam_elementwise_map,
            "Grad-CAM element-wise, native batched: sum_c ReLU(G * A)"),
    _Method(("eigencam",), "EigenCAM", eigencam_map,
            "Eigen-CAM, native and batched: first principal component of the activations (no backward, class-agnostic)",
            uses_gradients=False),
)


def _make_method(method: _Method) -> type[CAMExplainer]:
    doc = (f"{method.description}.\n\nRegistered as {', '.join(repr(n) for n in method.names)}; "
           f"formula :func:`{method.formula.__name__}`. Args: see :class:`CAMExplainer`.")
    cls = type(method.class_name, (CAMExplainer,), {
        "__module__": __name__,
        "__qualname__": method.class_name,
        "__doc__": doc,
        "description": method.description,
        "formula": staticmethod(method.formula),
        "uses_gradients": method.uses_gradients,
    })
    for name in method.names:
        register_explainer(name)(cls)
    return cls


for _method in _METHODS:
    globals()[_method.class_name] = _make_method(_method)
del _method

__all__ = [
    "CAMExplainer",
    "layer_activation_and_gradient",
    "gradcam_map",
    "gradcam_pp_map",
    "xgradcam_map",
    "layercam_map",
    "hirescam_map",
    "gradcam_elementwise_map",
    "eigencam_map",
    *(method.class_name for method in _METHODS),
]
