"""How exaug drives pytorch-grad-cam: :class:`PGCExplainer`, the shared wrapper of every ``pgc.*`` backend.

pytorch-grad-cam has side effects that must not reach the caller, and each is handled here, in the base class or
in the method's override class (:mod:`exaug.explainers.pgc`):

* its constructor calls ``model.eval()`` and never restores the mode; every call runs ``model.zero_grad()`` and
  a full ``backward()``: the base class runs :meth:`Explainer._attribute` inside
  :func:`exaug.utils.isolation.isolated`, which restores training flags and ``.grad`` tensors;
* its forward hooks stay registered until ``release()`` (or a ``with`` exit, which also *swallows* an
  ``IndexError``): the CAM object is built per call and released in ``finally``, without ``with``;
* AblationCAM swaps the target layer for an ``AblationLayer`` and puts it back only on success, and its default
  ``AblationLayer`` is one instance shared by every AblationCAM that keeps the last batch alive: the module tree is
  restored in ``finally`` and every call gets a fresh ``AblationLayer``;
* ScoreCAM and AblationCAM print tqdm progress bars per image: silenced for the duration of the call;
* RandomCAM (numpy) and KPCA-CAM (scikit-learn's ARPACK start vector) draw from numpy's global RNG: every call runs
  on a fork of the global RNGs (:class:`~exaug.explainers.randomness.RandomSource`), seeded by the stochastic
  methods' ``seed`` / ``generator``, and the caller's RNG states are restored;
* activations and gradients go through numpy (no bfloat16) and LAPACK (no float16): half-precision models are
  explained in float32 (a float32 input leaf, cast to the model's dtype on entry; activations and gradients read in
  float32), see :meth:`PGCExplainer._attribute`.

The library is imported lazily (it takes seconds), only when a map is computed.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.outputs import tuple_output_tapped
from .base import Explainer
from .layers import module_tree_restored
from .randomness import RandomSource

__all__ = ["PGCExplainer"]


# Floating point types that numpy (bfloat16) or LAPACK (float16) cannot take: pgc's maps are computed in float32.
_HALF_DTYPES = (torch.bfloat16, torch.float16)


def _pgc() -> types.ModuleType:
    import pytorch_grad_cam

    return pytorch_grad_cam


def _no_progress_bar(iterable: Any, *args: Any, **kwargs: Any) -> Any:
    return iterable


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Silence the per-image tqdm bars of ScoreCAM and AblationCAM (they write to stderr on every call)."""
    import pytorch_grad_cam.ablation_cam
    import pytorch_grad_cam.score_cam

    modules = [m for m in (pytorch_grad_cam.score_cam, pytorch_grad_cam.ablation_cam) if hasattr(m, "tqdm")]
    saved = [m.tqdm for m in modules]
    quiet = types.SimpleNamespace(tqdm=_no_progress_bar)
    try:
        for m in modules:
            m.tqdm = quiet
        yield
    finally:
        for m, original in zip(modules, saved):
            m.tqdm = original


def _floating_args_cast_to(dtype: torch.dtype) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    """A forward pre-hook that casts floating point tensor arguments to ``dtype`` (differentiably)."""

    def cast(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)

    return cast


class PGCExplainer(Explainer):
    """Shared wrapper of the pytorch-grad-cam methods (not registered itself; subclasses set ``cam_class``).

    Args:
        model: maps images to logits.
        target_layer: dotted path or module; default: the last module with a spatial output larger than 1x1.
        reshape_transform: callable from the layer output to ``(B, C, h, w)`` (pgc's hook); ``None``: token and
            channels-last layers are read by ``layout`` (see :func:`~exaug.explainers.layers.to_feature_map`).
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"``.
        aug_smooth: pytorch-grad-cam's test-time augmentation (horizontal flip x brightness 0.9 / 1.0 / 1.1, six
            passes, averaged).
        eigen_smooth: replace the weighted channel sum by the first principal component of the weighted
            activations (less noise).
        seed: stochastic methods only (``stochastic``): seed of every call's draws (same images, same map).
        generator: stochastic methods only: ``torch.Generator`` each call draws its seed from. With neither, the
            method sees the global RNGs as the caller left them; they are restored after every call regardless.
    """

    uses_layer = True
    #: Name of the class in ``pytorch_grad_cam``.
    cam_class: str = ""
    #: Whether the pgc object's ``__call__`` accepts ``aug_smooth``.
    supports_aug_smooth: bool = True
    #: Whether the method draws random numbers (then it takes ``seed`` / ``generator``).
    stochastic: bool = False
    #: Image dtypes the method cannot explain, because pgc hands model tensors to numpy before exaug can cast them.
    unsupported_dtypes: tuple[torch.dtype, ...] = ()

    def __init__(
        self,
        model: nn.Module,
        *,
        target_layer: str | nn.Module | None = None,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
        layout: str = "auto",
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, target_layer=target_layer, reshape_transform=reshape_transform, layout=layout)
        if aug_smooth and not self.supports_aug_smooth:
            raise ValueError(f"{type(self).__name__} does not support aug_smooth")
        if not self.stochastic and (seed is not None or generator is not None):
            raise ValueError(f"{type(self).__name__} is deterministic: it takes no seed or generator")
        self.random = RandomSource(seed, generator)
        self._image_size: tuple[int, int] | None = None
        # Set per call when the target layer returns a tuple (transformer blocks): pgc then hooks this identity,
        # which sees the layer's hidden states (see tuple_output_tapped).
        self._tap: nn.Module | None = None
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)

    # -- steps that subclasses adapt ------------------------------------------------------------------------
    def _cam_layers(self) -> list[nn.Module]:
        assert self.layer is not None
        return [self.layer if self._tap is None else self._tap]

    def _cam_kwargs(self) -> dict[str, Any]:
        """Extra constructor arguments of the pgc class."""
        return {}

    def _pgc_reshape(self, output: Tensor) -> Tensor:
        """pgc's ``reshape_transform``: the shared reading of the layer output (identity for CNN layers), in at
        least float32, because pgc hands activations and gradients to numpy (no bfloat16) and LAPACK (no float16)."""
        fmap = self.feature_map(output, self._image_size)  # type: ignore[arg-type]  (set by _attribute)
        return fmap.float() if fmap.dtype in _HALF_DTYPES else fmap

    def _create_cam(self) -> Any:
        cam_type = getattr(_pgc(), self.cam_class)
        return cam_type(self.logits_model, self._cam_layers(), reshape_transform=self._pgc_reshape,
                        **self._cam_kwargs())

    def _pgc_targets(self, logits: Tensor, targets: Tensor) -> list[Any]:
        """One pgc target object per sample (pgc's interface is a Python list)."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        return [ClassifierOutputTarget(t) for t in targets.tolist()]

    def _run(self, cam: Any, inputs: Tensor, pgc_targets: list[Any]) -> np.ndarray:
        return cam(inputs, pgc_targets, aug_smooth=self.aug_smooth, eigen_smooth=self.eigen_smooth)

    # -- the contract ---------------------------------------------------------------------------------------
    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        if images.dtype in self.unsupported_dtypes:
            raise TypeError(
                f"{type(self).__name__} cannot explain images of dtype {images.dtype}: pytorch-grad-cam converts the "
                "model's tensors to numpy, which has no such type; explain a float32 copy of the model and images"
            )
        # The logits forward also tells whether the target layer returns a tuple (pgc hooks need a tensor);
        # FullGrad has no single target layer.
        returns_tuple: list[bool] = []
        probe = None if self.layer is None else self.layer.register_forward_hook(
            lambda module, inputs, output: returns_tuple.append(not isinstance(output, Tensor)))
        try:
            logits, targets = self._forward_logits(images, targets)
        finally:
            if probe is not None:
                probe.remove()
        self._tap = nn.Identity() if any(returns_tuple) else None
        self._image_size = (images.shape[-2], images.shape[-1])
        pgc_targets = self._pgc_targets(logits, targets)
        # Half precision: pgc gets a float32 leaf (its input gradient and ScoreCAM's masked copies go through numpy /
        # float32 maths) and the model gets it back in its own dtype through a temporary pre-hook.
        half = images.dtype in _HALF_DTYPES
        with contextlib.ExitStack() as stack:
            stack.enter_context(module_tree_restored(self.model))
            stack.enter_context(_quiet_progress_bars())
            stack.enter_context(self.random.global_rngs(images.device))
            if self._tap is not None and self.layer is not None:
                stack.enter_context(tuple_output_tapped(self.layer, self._tap))
            if half:
                handle = self.model.register_forward_pre_hook(_floating_args_cast_to(images.dtype))
                stack.callback(handle.remove)
            cam = self._create_cam()
            core = getattr(cam, "base_cam", cam)  # FinerCAM wraps a BaseCAM
            stack.callback(core.activations_and_grads.release)
            needs_grad = bool(core.uses_gradients or core.compute_input_gradient)
            with torch.set_grad_enabled(needs_grad):
                # A fresh leaf that requires grad: with a frozen model (or a no_grad caller) pgc's gradient hooks
                # would otherwise never fire.
                inputs = (images.float() if half else images).detach().requires_grad_(needs_grad)
                maps = self._run(cam, inputs, pgc_targets)
        raw = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).to(images.device)
        return raw, logits, targets

    def extra_repr(self) -> str:
        parts = []
        if self.aug_smooth:
            parts.append("aug_smooth=True")
        if self.eigen_smooth:
            parts.append("eigen_smooth=True")
        if self.random.seed is not None or self.random.generator is not None:
            parts.append(repr(self.random))
        return ", ".join(parts)
