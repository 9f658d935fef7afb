"""pytorch-grad-cam backends (``pgc.*``): the CAM methods of pytorch-grad-cam 1.5 as exaug explainers.

These are reference implementations: per-sample Python targets, activations copied to numpy, per-image OpenCV
resizing, a full backward for the gradient methods. Use the native ``gradcam`` inside training loops.

pytorch-grad-cam's side effects, and how each is kept from the caller, are listed in
:mod:`exaug.explainers.pgc_base` (where the shared wrapper :class:`PGCExplainer` lives) and in the override classes
below.

The backends differ only in their row of ``_METHODS`` (registry name, pgc class, description, constructor options)
and, for methods with a quirk, a small override class named in that row; their classes are generated from it.

The library is imported lazily (it takes seconds), only when a map is computed.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.checks import positive_int
from .pgc_base import PGCExplainer
from .registry import register_explainer

# __all__ (PGCExplainer and one class per row of the table) is set at the end of the module.


# -- special handling, one small override per quirk ------------------------------------------------------------


class _Option(NamedTuple):
    """A constructor option of one pgc method: its default, an optional ``check(name, value)`` and its doc line."""

    default: Any
    check: Callable[[str, Any], Any] | None
    doc: str


def _unit_fraction(name: str, value: Any) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return float(value)


class _PGCWithOptions(PGCExplainer):
    """A pgc method with constructor options of its own, declared in ``cam_options``.

    Each option becomes an attribute of the same name (validated by its check); :meth:`_cam_kwargs` passes them to
    the pgc class's constructor.
    """

    cam_options: dict[str, _Option] = {}

    def __init__(self, model: nn.Module, **options: Any) -> None:
        own = {name: options.pop(name, option.default) for name, option in self.cam_options.items()}
        super().__init__(model, **options)
        for name, value in own.items():
            check = self.cam_options[name].check
            setattr(self, name, value if check is None else check(name, value))

    def _cam_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.cam_options}


class _ScoreCAMBatching(_PGCWithOptions):
    """ScoreCAM reads ``batch_size`` as an attribute; its constructor has no argument for it."""

    def _cam_kwargs(self) -> dict[str, Any]:
        return {}

    def _create_cam(self) -> Any:
        cam = super()._create_cam()
        cam.batch_size = self.batch_size  # type: ignore[attr-defined]
        return cam


class _FreshAblationLayer(_PGCWithOptions):
    """The target layer is swapped for an ``AblationLayer`` during the call; the original module is always put back.
    pgc's default ``AblationLayer`` is one instance shared by every AblationCAM that keeps the last batch alive:
    each call gets a fresh one; token and channels-last layers get pgc's ``AblationLayerVit`` (ablates dim -1)."""

    _channels_last = False

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        assert self.layer is not None
        shapes: list[Any] = []  # one forward of one image, for the layout of the layer output
        handle = self.layer.register_forward_hook(
            lambda module, inputs, output: shapes.append(getattr(output, "shape", type(output).__name__)))
        try:
            with torch.no_grad():
                self.model(images[:1])
        finally:
            handle.remove()
        if shapes and not isinstance(shapes[0], torch.Size):
            # pgc swaps the layer for an AblationLayer that returns a tensor: the model's code after a layer that
            # returns a tuple (``block(x)[0]``) would then read the wrong thing.
            raise ValueError(
                f"{type(self).__name__} cannot ablate target_layer {self.layer_name!r}: it returns a {shapes[0]}, "
                "not a tensor; choose a layer that returns a tensor (e.g. the block's norm layer)"
            )
        fmap = self.feature_map(torch.empty(shapes[0], device="meta"), (images.shape[-2], images.shape[-1]))
        self._channels_last = len(shapes[0]) != 4 or shapes[0][1] != fmap.shape[1]
        return super()._attribute(images, targets)

    def _cam_kwargs(self) -> dict[str, Any]:
        from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

        layer = AblationLayerVit() if self._channels_last else AblationLayer()
        return {**super()._cam_kwargs(), "ablation_layer": layer}


@functools.lru_cache(maxsize=None)
def _shapley_cam_type() -> type:
    """pgc's ShapleyCAM, fixed for gradients that are constant in the activations.

    pgc differentiates the layer gradient again to get the Hessian-vector product. When the network after the layer
    is linear in it (GAP + linear head) and the parameters are frozen, that gradient has no graph and pgc raises
    "element 0 of tensors does not require grad". The product is then exactly zero: attaching the gradient to the
    activations with a zero factor makes pgc compute that zero itself.
    """
    from pytorch_grad_cam import ShapleyCAM

    class FrozenSafeShapleyCAM(ShapleyCAM):
        def get_cam_weights(self, input_tensor, target_layer, target_category, activations, grads):  # type: ignore
            if not grads.requires_grad:
                grads = grads + 0 * activations
            return super().get_cam_weights(input_tensor, target_layer, target_category, activations, grads)

    return FrozenSafeShapleyCAM


class _FrozenSafeShapley(PGCExplainer):
    """pgc's version fails on a frozen model whose head after the layer is linear (the gradient has no graph); here
    the Hessian-vector product is then zero, as it mathematically is. pgc converts its raw activations to numpy, so
    bfloat16 images are refused with a clear error."""

    unsupported_dtypes = (torch.bfloat16,)

    def _create_cam(self) -> Any:
        return _shapley_cam_type()(self.logits_model, self._cam_layers(), reshape_transform=self._pgc_reshape)


class _AllBiasedLayers(PGCExplainer):
    """It uses every biased layer, never a single target layer, so ``target_layer`` is rejected (``uses_layer`` is
    False) and no default layer is searched. pgc converts every bias to numpy, so bfloat16 images are refused with
    a clear error."""

    uses_layer = False
    unsupported_dtypes = (torch.bfloat16,)

    def _cam_layers(self) -> list[nn.Module]:
        return []  # FullGrad finds its own layers (and prints a warning if given any)


class _FinerComparison(PGCExplainer):
    """For each sample, the comparison classes are those whose logits are closest to the target's (ranks
    ``comparison_categories`` of that ordering, the target being rank 0), weighted by their softmax probability,
    exactly as pytorch-grad-cam does for the predicted class when it is given no targets.

    Args:
        alpha: strength of the comparison (``FinerWeightedTarget``'s ``alpha``; 0 gives plain Grad-CAM).
        comparison_categories: ranks of the comparison classes (pgc's default ``(1, 2, 3)``); ranks beyond the
            number of classes are dropped.
        **options: see :class:`PGCExplainer` (``aug_smooth`` is not supported by FinerCAM).
    """

    supports_aug_smooth = False

    def __init__(
        self, model: nn.Module, *, alpha: float = 1.0, comparison_categories: Sequence[int] = (1, 2, 3), **options: Any
    ) -> None:
        super().__init__(model, **options)
        ranks = [int(c) for c in comparison_categories]
        if not ranks or min(ranks) < 1:
            raise ValueError(f"comparison_categories must be ranks >= 1, got {comparison_categories!r}")
        self.alpha = float(alpha)
        self.comparison_categories = tuple(ranks)

    def _pgc_targets(self, logits: Tensor, targets: Tensor) -> list[Any]:
        from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

        gap = (logits - logits.gather(1, targets.unsqueeze(1))).abs()  # (B, K) distance to the target's logit
        gap.scatter_(1, targets.unsqueeze(1), -1.0)  # the target is rank 0 even if another class ties with it
        order = gap.argsort(dim=1).tolist()
        ranks = [r for r in self.comparison_categories if r < logits.shape[1]]
        return [FinerWeightedTarget(row[0], [row[r] for r in ranks], self.alpha) for row in order]

    def _run(self, cam: Any, inputs: Tensor, pgc_targets: list[Any]) -> np.ndarray:
        return cam(inputs, pgc_targets, eigen_smooth=self.eigen_smooth)

    def extra_repr(self) -> str:
        parts = [f"alpha={self.alpha}", f"comparison_categories={self.comparison_categories}", super().extra_repr()]
        return ", ".join(p for p in parts if p)


# -- the table ------------------------------------------------------------------------------------------------


class _Method(NamedTuple):
    """One row of :data:`_METHODS`: everything that tells one ``pgc.*`` backend from another."""

    name: str  # registry name
    class_name: str  # exaug class, exported from this module
    cam_class: str  # class in ``pytorch_grad_cam``
    summary: str  # class docstring
    description: str  # one line for ``exaug explainers``
    base: type = PGCExplainer  # special handling, if any
    options: dict[str, _Option] | None = None  # constructor options of the pgc method
    stochastic: bool = False  # draws random numbers: takes seed / generator


_METHODS: tuple[_Method, ...] = (
    _Method("pgc.gradcam", "PGCGradCAM", "GradCAM",
            "Grad-CAM (pytorch-grad-cam ``GradCAM``): channel weights = spatial mean of the gradient.",
            "pytorch-grad-cam GradCAM (reference for the native gradcam)"),
    _Method("pgc.hirescam", "PGCHiResCAM", "HiResCAM",
            "HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, summed over channels.",
            "pytorch-grad-cam HiResCAM: sum_k grad * activation (faithful to the model's computation)"),
    _Method("pgc.gradcam_elementwise", "PGCGradCAMElementWise", "GradCAMElementWise",
            "Grad-CAM element-wise: ``sum_k ReLU(grad * activation)``.",
            "pytorch-grad-cam GradCAMElementWise: sum_k ReLU(grad * activation)"),
    _Method("pgc.gradcam++", "PGCGradCAMPlusPlus", "GradCAMPlusPlus",
            "Grad-CAM++ (Chattopadhay et al. 2018): second-order-style weighting of positive gradients.",
            "pytorch-grad-cam GradCAMPlusPlus"),
    _Method("pgc.xgradcam", "PGCXGradCAM", "XGradCAM",
            "XGrad-CAM (Fu et al. 2020): gradients weighted by the normalised activations.",
            "pytorch-grad-cam XGradCAM"),
    _Method("pgc.layercam", "PGCLayerCAM", "LayerCAM",
            "LayerCAM (Jiang et al. 2021): ``sum_k ReLU(grad) * activation``, usable on early layers.",
            "pytorch-grad-cam LayerCAM: sum_k ReLU(grad) * activation"),
    _Method("pgc.eigencam", "PGCEigenCAM", "EigenCAM",
            "Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the activations; ignores the target.",
            "pytorch-grad-cam EigenCAM: first principal component of the activations (class-agnostic)"),
    _Method("pgc.eigengradcam", "PGCEigenGradCAM", "EigenGradCAM",
            "Eigen-Grad-CAM: first principal component of gradient x activation.",
            "pytorch-grad-cam EigenGradCAM: first principal component of grad * activation"),
    _Method("pgc.kpca_cam", "PGCKPCACAM", "KPCA_CAM",
            "KPCA-CAM (Karmani et al. 2024): first kernel principal component of the activations; ignores the "
            "target.",
            "pytorch-grad-cam KPCA_CAM: kernel PCA of the activations (class-agnostic, scikit-learn)",
            options={"kernel": _Option("sigmoid", None, "scikit-learn ``KernelPCA`` kernel (pgc's default)."),
                     "gamma": _Option(None, None, "kernel coefficient (``None``: scikit-learn's default).")},
            stochastic=True),  # ARPACK's random start vector (numpy's RNG) on layers with more than 200 positions
    _Method("pgc.fem", "PGCFEM", "FEM",
            "FEM (Fuad et al. 2020): channels weighted by how often they exceed mean + k std; ignores the target.",
            "pytorch-grad-cam FEM: k-sigma feature explanation (class-agnostic, no gradients)",
            options={"k": _Option(2.0, None, "the threshold in standard deviations (pgc's default 2).")}),
    _Method("pgc.seg_eigencam", "PGCSegEigenCAM", "SegEigenCAM",
            "Seg-Eigen-CAM (Chung & Ying 2025): principal component of ``|grad| * activation`` with a sign "
            "correction. Designed for segmentation; on a classifier it explains the target logit like "
            "Eigen-Grad-CAM with absolute gradients.",
            "pytorch-grad-cam SegEigenCAM: sign-corrected principal component of |grad| * activation"),
    _Method("pgc.shapleycam", "PGCShapleyCAM", "ShapleyCAM",
            "ShapleyCAM (Cai 2025): weights = spatial mean of ``grad - 0.5 * Hessian-vector product`` (double "
            "backward).",
            "pytorch-grad-cam ShapleyCAM: gradient and Hessian-vector product weights (double backward)",
            base=_FrozenSafeShapley),
    _Method("pgc.randomcam", "PGCRandomCAM", "RandomCAM",
            "pytorch-grad-cam's control: uniform random channel weights in ``[-1, 1]`` (numpy's RNG, on a fork "
            "seeded by ``seed`` / ``generator``).",
            "pytorch-grad-cam RandomCAM: random channel weights (control; seed / generator)", stochastic=True),
    _Method("pgc.scorecam", "PGCScoreCAM", "ScoreCAM",
            "Score-CAM (Wang et al. 2020): channel weights = softmax of the target scores of the image masked by "
            "each upsampled activation map. No gradients; ``C`` masked copies of each image for a layer with ``C`` "
            "channels.",
            "pytorch-grad-cam ScoreCAM: gradient-free, one masked copy per channel and image (batch_size=16)",
            base=_ScoreCAMBatching,
            options={"batch_size": _Option(16, positive_int, "masked images per forward (pgc's default 16).")}),
    _Method("pgc.ablationcam", "PGCAblationCAM", "AblationCAM",
            "Ablation-CAM (Desai & Ramaswamy 2020): channel weights = relative drop of the target score when the "
            "channel is ablated. No gradients; ``C / batch_size`` forwards of ``batch_size`` copies per image.",
            "pytorch-grad-cam AblationCAM: gradient-free, ablates each channel (batch_size=32)",
            base=_FreshAblationLayer,
            options={
                "batch_size": _Option(32, positive_int, "ablated copies per forward (pgc's default 32)."),
                "ratio_channels_to_ablate": _Option(
                    1.0, _unit_fraction, "fraction of channels to ablate (pgc's experimental speed-up; 1.0 = all)."
                ),
            }),
    _Method("pgc.fullgrad", "PGCFullGrad", "FullGrad",
            "FullGrad (Srinivas & Fleuret 2019): ``|input x input-gradient|`` plus ``|bias x gradient|`` of every "
            "Conv2d / BatchNorm2d with a bias, each resized to the image and summed.",
            "pytorch-grad-cam FullGrad: input-gradient and bias-gradients of all conv/BN layers (no layer)",
            base=_AllBiasedLayers),
    _Method("pgc.finercam", "PGCFinerCAM", "FinerCAM",
            "Finer-CAM (Zhang et al. 2025): Grad-CAM of the target logit *minus* the logits of the most similar "
            "classes, which highlights what tells the target apart from its look-alikes.",
            "pytorch-grad-cam FinerCAM: Grad-CAM of target vs its most similar classes (alpha=1)",
            base=_FinerComparison),
)


def _method_doc(method: _Method, base: type) -> str:
    """The generated class's docstring: the table's summary, then the options or the special handling."""
    doc = method.summary
    if method.options:
        lines = [f"    {name}: {option.doc} Default ``{option.default!r}``." for name, option in method.options.items()]
        doc += "\n\nArgs:\n" + "\n".join(lines) + "\n    **options: see :class:`PGCExplainer`."
    if base.__doc__ and base not in (PGCExplainer, _PGCWithOptions):
        doc += "\n\n" + inspect.cleandoc(base.__doc__)
    return doc


def _make_backend(method: _Method) -> type[PGCExplainer]:
    """Build, register and return the class of one table row."""
    base = _PGCWithOptions if method.options and method.base is PGCExplainer else method.base
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": method.class_name,
        "__doc__": _method_doc(method, base),
        "cam_class": method.cam_class,
        "description": method.description,
        "stochastic": method.stochastic,
    }
    if method.options:
        attrs["cam_options"] = dict(method.options)
    cls = type(method.class_name, (base,), attrs)
    return register_explainer(method.name)(cls)


# Module-level names, so the classes import, pickle and show in docs like hand-written ones.
for _method in _METHODS:
    globals()[_method.class_name] = _make_backend(_method)
del _method

__all__ = ["PGCExplainer", *(method.class_name for method in _METHODS)]
