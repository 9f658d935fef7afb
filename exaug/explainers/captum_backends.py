"""Captum attribution methods as exaug explainers (registered by name).

Gradient methods (``saliency``, ``input_x_gradient``, ``guided_backprop``, ``deconvolution``), the sampling
methods whose cost is their step count (``integrated_gradients``, ``smoothgrad``, ``gradient_shap``), the
perturbation method ``occlusion`` and Captum's Grad-CAM (``captum.layer_gradcam``). How they are driven (fresh
input leaf, isolation, channel reduction) is in :mod:`exaug.explainers.captum_base`; baselines come from
:func:`exaug.utils.images.make_baseline`.

Captum is imported lazily (it takes seconds), only when an attribution is computed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..utils.checks import non_negative_float, positive_int
from ..utils.images import BASELINES, check_baseline, make_baseline
from ..utils.outputs import layer_tensor, with_layer_tensor
from .captum_base import (
    CHANNEL_REDUCTIONS,
    CaptumExplainer,
    CaptumPixelExplainer,
    CaptumSampledExplainer,
    reduce_channels,
)
from .registry import register_explainer

__all__ = [
    # Re-exported from their homes for backward compatibility.
    "BASELINES",
    "CHANNEL_REDUCTIONS",
    "reduce_channels",
    "make_baseline",
    "CaptumExplainer",
    "CaptumPixelExplainer",
    "CaptumSampledExplainer",
    # The backends.
    "IntegratedGradientsExplainer",
    "SmoothGradExplainer",
    "GradientShapExplainer",
    "SaliencyExplainer",
    "InputXGradientExplainer",
    "GuidedBackpropExplainer",
    "DeconvolutionExplainer",
    "OcclusionExplainer",
    "CaptumLayerGradCamExplainer",
]


@register_explainer("integrated_gradients")
class IntegratedGradientsExplainer(CaptumPixelExplainer):
    """Integrated Gradients (Sundararajan et al. 2017) via ``captum.attr.IntegratedGradients``.

    Args:
        model: maps images to logits.
        n_steps: points on the path from the baseline to the image (cost: ``n_steps`` forward+backward passes).
        internal_batch_size: evaluate the ``B * n_steps`` path points in chunks of this size (memory bound);
            ``None``: all at once.
        baseline: ``"zero"``, ``"blur"``, a number or a tensor, see :func:`~exaug.utils.images.make_baseline`.
        method: Captum's quadrature, ``"gausslegendre"`` (default) or ``"riemann_{left,right,middle,trapezoid}"``.
        channel_reduction: see :func:`reduce_channels`.
    """

    description = "Integrated Gradients (Captum); n_steps=16, baseline zero|blur|number|tensor"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_steps: int = 16,
        internal_batch_size: int | None = None,
        baseline: str | float | Tensor = "zero",
        method: str = "gausslegendre",
        channel_reduction: str = "abs_sum",
    ) -> None:
        super().__init__(model, channel_reduction=channel_reduction)
        self.n_steps = positive_int("n_steps", n_steps)
        self.internal_batch_size = positive_int("internal_batch_size", internal_batch_size, allow_none=True)
        self.baseline = check_baseline(baseline)
        self.method = method

    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients

        return IntegratedGradients(self.logits_model).attribute(
            inputs,
            baselines=make_baseline(inputs, self.baseline),
            target=targets,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=self.internal_batch_size,
        )

    def extra_repr(self) -> str:
        baseline = "tensor" if isinstance(self.baseline, Tensor) else repr(self.baseline)
        return f"n_steps={self.n_steps}, baseline={baseline}, method={self.method!r}, {super().extra_repr()}"


@register_explainer("smoothgrad")
class SmoothGradExplainer(CaptumSampledExplainer):
    """SmoothGrad (Smilkov et al. 2017): ``captum.attr.NoiseTunnel`` over ``Saliency`` with signed gradients.

    The signed gradients of the noisy copies are averaged (the paper's definition); the channel reduction then
    takes the magnitude (``abs_sum``) or keeps the sign.

    Args:
        model: maps images to logits.
        nt_samples: noisy copies per image (cost: ``nt_samples`` forward+backward passes).
        nt_samples_batch_size: copies evaluated per pass (memory bound); ``None``: all at once.
        noise_level: noise standard deviation as a fraction of the batch's value range ``max(x) - min(x)`` (the
            paper's 10-20 %). Captum's ``stdevs`` are absolute input units, so this is converted per call.
        stdevs: absolute standard deviation in input units; when given, ``noise_level`` is ignored.
        seed: seed of every call's noise (same images, same map).
        generator: ``torch.Generator`` each call draws its noise seed from (exclusive with ``seed``).
        channel_reduction: see :func:`reduce_channels`.

    Randomness: Captum draws the noise from torch's global RNG; it runs on a fork seeded from ``seed`` /
    ``generator`` (or, with neither, the caller's state as it is), and the caller's RNG states are left unchanged
    (see :class:`~exaug.explainers.captum_base.CaptumSampledExplainer`).
    """

    description = "SmoothGrad (Captum NoiseTunnel over Saliency); nt_samples=8, noise_level=0.15 of the value range"

    def __init__(
        self,
        model: nn.Module,
        *,
        nt_samples: int = 8,
        nt_samples_batch_size: int | None = None,
        noise_level: float = 0.15,
        stdevs: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        channel_reduction: str = "abs_sum",
    ) -> None:
        super().__init__(model, seed=seed, generator=generator, channel_reduction=channel_reduction)
        self.nt_samples = positive_int("nt_samples", nt_samples)
        self.nt_samples_batch_size = positive_int("nt_samples_batch_size", nt_samples_batch_size, allow_none=True)
        self.noise_level = non_negative_float("noise_level", noise_level)
        self.stdevs = None if stdevs is None else non_negative_float("stdevs", stdevs)

    def noise_std(self, images: Tensor) -> float:
        """Absolute noise standard deviation for this batch (one host sync)."""
        if self.stdevs is not None:
            return self.stdevs
        return self.noise_level * float(images.detach().amax() - images.detach().amin())

    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import NoiseTunnel, Saliency

        return NoiseTunnel(Saliency(self.logits_model)).attribute(
            inputs,
            nt_type="smoothgrad",
            nt_samples=self.nt_samples,
            nt_samples_batch_size=self.nt_samples_batch_size,
            stdevs=self.noise_std(inputs),
            target=targets,
            abs=False,
        )

    def extra_repr(self) -> str:
        noise = f"stdevs={self.stdevs}" if self.stdevs is not None else f"noise_level={self.noise_level}"
        return f"nt_samples={self.nt_samples}, {noise}, {super().extra_repr()}"


@register_explainer("gradient_shap")
class GradientShapExplainer(CaptumSampledExplainer):
    """GradientSHAP (Lundberg & Lee 2017) as in ``captum.attr.GradientShap``.

    Each of the ``n_samples`` draws takes a baseline ``b``, a point ``b + u (x + noise - b)`` with
    ``u ~ U(0, 1)`` and attributes ``(x - b) * gradient`` there; the draws are averaged.

    Args:
        model: maps images to logits.
        n_samples: draws per image (cost: ``n_samples`` forward+backward passes).
        stdevs: absolute standard deviation (input units) of the noise added to the image, Captum's default 0.
        baselines: where the path starts.

            * ``"zero+blur"`` (default): both the zero image and the image's own blur (see
              :func:`~exaug.utils.images.make_baseline`),
              stratified: half of the draws (rounded up) start from each, and the two means are averaged.
            * ``"zero"``, ``"blur"`` or a number: that one per-sample baseline.
            * a tensor ``(N, C, H, W)``: a baseline *distribution* shared by the batch, passed to
              ``GradientShap`` unchanged (each draw picks a random row, as in Captum).

            Captum's ``GradientShap`` only draws from a shared distribution, so the per-sample baselines run
            its building blocks (``NoiseTunnel`` over ``InputBaselineXGradient``) directly, in one batched call.
        seed: seed of every call's draws (same images, same map).
        generator: ``torch.Generator`` each call draws its seed from (exclusive with ``seed``).
        channel_reduction: see :func:`reduce_channels`.

    Randomness: Captum draws the coefficients and baseline rows from numpy's global RNG and the noise from torch's;
    both run on a fork seeded from ``seed`` / ``generator`` (or, with neither, the caller's states as they are),
    and the caller's RNG states are left unchanged.
    """

    description = "GradientSHAP (Captum); n_samples=8, baselines zero+blur of each image by default"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 8,
        stdevs: float = 0.0,
        baselines: str | float | Tensor = "zero+blur",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        channel_reduction: str = "abs_sum",
    ) -> None:
        super().__init__(model, seed=seed, generator=generator, channel_reduction=channel_reduction)
        self.n_samples = positive_int("n_samples", n_samples)
        self.stdevs = non_negative_float("stdevs", stdevs)
        self.baselines = check_baseline(baselines, "baselines", extra=("zero+blur",))

    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        if isinstance(self.baselines, Tensor):
            from captum.attr import GradientShap

            distribution = self.baselines.detach().to(device=inputs.device, dtype=inputs.dtype)
            if distribution.dim() == 3:
                distribution = distribution.unsqueeze(0)
            if distribution.dim() != 4 or distribution.shape[1:] != inputs.shape[1:]:
                raise ValueError(
                    f"a baselines tensor is a distribution (N, C, H, W) with (C, H, W) = {tuple(inputs.shape[1:])}, "
                    f"got {tuple(self.baselines.shape)}"
                )
            return GradientShap(self.logits_model).attribute(
                inputs, baselines=distribution, n_samples=self.n_samples, stdevs=self.stdevs, target=targets
            )
        from captum.attr import NoiseTunnel
        from captum.attr._core.gradient_shap import InputBaselineXGradient

        kinds = ("zero", "blur") if self.baselines == "zero+blur" else (self.baselines,)
        k, b = len(kinds), inputs.shape[0]
        # One batched call: the batch repeated once per baseline kind, each copy with its own baselines.
        stacked = inputs.detach().repeat(k, 1, 1, 1).requires_grad_(True)
        references = torch.cat([make_baseline(inputs, kind) for kind in kinds])
        attributions = NoiseTunnel(InputBaselineXGradient(self.logits_model)).attribute(
            stacked,
            nt_type="smoothgrad",
            nt_samples=math.ceil(self.n_samples / k),
            stdevs=self.stdevs,
            draw_baseline_from_distrib=False,
            baselines=references,
            target=targets.repeat(k),
        )
        return attributions.view(k, b, *inputs.shape[1:]).mean(dim=0)

    def extra_repr(self) -> str:
        baselines = "tensor" if isinstance(self.baselines, Tensor) else repr(self.baselines)
        return f"n_samples={self.n_samples}, stdevs={self.stdevs}, baselines={baselines}, {super().extra_repr()}"


class _SimpleCaptumExplainer(CaptumPixelExplainer):
    """Captum methods whose ``attribute`` needs only the inputs and the target (plus fixed ``_kwargs``)."""

    _captum_class: str = ""
    _kwargs: dict[str, Any] = {}

    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        import captum.attr

        method = getattr(captum.attr, self._captum_class)(self.logits_model)
        with warnings.catch_warnings():
            # Guided backprop / deconvolution warn on every call that they set (and then remove) ReLU hooks.
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
            return method.attribute(inputs, target=targets, **self._kwargs)


@register_explainer("saliency")
class SaliencyExplainer(_SimpleCaptumExplainer):
    """Vanilla gradient saliency (Simonyan et al. 2014): ``captum.attr.Saliency`` with ``abs=True``, ``|df/dx|``."""

    description = "absolute input gradient (Captum Saliency); one forward+backward"
    _captum_class = "Saliency"
    _kwargs = {"abs": True}


@register_explainer("input_x_gradient")
class InputXGradientExplainer(_SimpleCaptumExplainer):
    """Input times gradient (Shrikumar et al. 2016): ``captum.attr.InputXGradient``."""

    description = "input x gradient (Captum InputXGradient); one forward+backward"
    _captum_class = "InputXGradient"


@register_explainer("guided_backprop")
class GuidedBackpropExplainer(_SimpleCaptumExplainer):
    """Guided backpropagation (Springenberg et al. 2015): ``captum.attr.GuidedBackprop``.

    Only ``nn.ReLU`` modules are modified (functional ``F.relu`` calls are not). ReLU modules that are reused
    within one forward (torchvision's ResNet blocks) are handled correctly: the override only needs the gradient
    arriving at each call's input (tested against a per-call reference).
    """

    description = "guided backprop (Captum GuidedBackprop; nn.ReLU modules only)"
    _captum_class = "GuidedBackprop"


@register_explainer("deconvolution")
class DeconvolutionExplainer(_SimpleCaptumExplainer):
    """Deconvolution (Zeiler & Fergus 2014): ``captum.attr.Deconvolution``.

    Only ``nn.ReLU`` modules are modified. Captum keeps the output gradient per module, not per call; for
    sequentially reused ReLUs (torchvision's ResNet blocks) each call's input gradient is computed right after
    its own output gradient, so the result is still exact (tested against a per-call reference). A ReLU module
    applied to two *parallel* branches would break this.
    """

    description = "deconvolution (Captum Deconvolution; nn.ReLU modules only)"
    _captum_class = "Deconvolution"


@register_explainer("occlusion")
class OcclusionExplainer(CaptumPixelExplainer):
    """Occlusion (Zeiler & Fergus 2014): ``captum.attr.Occlusion`` with square windows over all channels.

    Each pixel gets the mean drop of the target logit over the windows that cover it when they are replaced by
    the baseline (positive = evidence for the class).

    Args:
        model: maps images to logits.
        window: side of the square occlusion window (pixels, all channels at once).
        stride: step between windows; at most ``window`` so every pixel is covered.
        baseline: what occluded pixels become, see :func:`~exaug.utils.images.make_baseline`.
        perturbations_per_eval: occluded copies evaluated per forward (speed vs memory), Captum's default 1.
        channel_reduction: see :func:`reduce_channels` (the attribution is equal across channels, so ``"sum"``
            or ``"positive_sum"`` keep the sign of the effect).

    Cost: ``(ceil((H - window) / stride) + 1) * (ceil((W - window) / stride) + 1)`` forwards, no backward.
    """

    description = "occlusion (Captum Occlusion): sliding window=8, stride=4, baseline zero; forwards only"
    needs_input_grad = False

    def __init__(
        self,
        model: nn.Module,
        *,
        window: int = 8,
        stride: int = 4,
        baseline: str | float | Tensor = "zero",
        perturbations_per_eval: int = 1,
        channel_reduction: str = "abs_sum",
    ) -> None:
        super().__init__(model, channel_reduction=channel_reduction)
        self.window = positive_int("window", window)
        self.stride = positive_int("stride", stride)
        if self.stride > self.window:
            raise ValueError(f"stride ({stride}) must not exceed window ({window}), or some pixels are never occluded")
        self.baseline = check_baseline(baseline)
        self.perturbations_per_eval = positive_int("perturbations_per_eval", perturbations_per_eval)

    def attributions(self, inputs: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import Occlusion

        c, h, w = inputs.shape[1:]
        if self.window > min(h, w):
            raise ValueError(f"occlusion window {self.window} is larger than the images ({h}x{w})")
        return Occlusion(self.logits_model).attribute(
            inputs,
            sliding_window_shapes=(c, self.window, self.window),
            strides=(c, self.stride, self.stride),
            baselines=make_baseline(inputs, self.baseline),
            target=targets,
            perturbations_per_eval=self.perturbations_per_eval,
        )

    def extra_repr(self) -> str:
        baseline = "tensor" if isinstance(self.baseline, Tensor) else repr(self.baseline)
        return f"window={self.window}, stride={self.stride}, baseline={baseline}, {super().extra_repr()}"


@register_explainer("captum.layer_gradcam")
class CaptumLayerGradCamExplainer(CaptumExplainer):
    """Grad-CAM through ``captum.attr.LayerGradCam``: a reference for the native ``gradcam``.

    Token and channels-last layers: Captum hooks a probe module that receives the layer's
    :func:`~exaug.explainers.layers.to_feature_map` reading; the layer output continues unchanged, and the probe's
    gradient is the layer gradient read the same way (the adjoint of the linear reading, pytorch-grad-cam's
    semantics).

    Args:
        model: maps images to logits.
        target_layer: dotted path or module; default: see :func:`~exaug.explainers.layers.find_default_cam_layer`.
        relu_attributions: ReLU on the map. Captum's default is ``False`` (signed map), and so is ours, unlike the
            native ``gradcam`` (``relu=True``); with ``True`` both give the same maps.
        reshape_transform: callable from the layer output to ``(B, C, h, w)``; default: automatic (``layout``).
        layout: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"``.
    """

    description = "Grad-CAM via Captum LayerGradCam (reference); relu_attributions=False (Captum's default)"
    uses_layer = True

    def __init__(
        self,
        model: nn.Module,
        *,
        target_layer: str | nn.Module | None = None,
        relu_attributions: bool = False,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
        layout: str = "auto",
    ) -> None:
        super().__init__(model, target_layer=target_layer, reshape_transform=reshape_transform, layout=layout)
        self.relu_attributions = bool(relu_attributions)

    def _captum_map(self, inputs: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import LayerGradCam

        assert self.layer is not None
        probe = nn.Identity()
        size = (inputs.shape[-2], inputs.shape[-1])

        def read_through_probe(module: nn.Module, args: Any, output: Any) -> Any:
            tensor = layer_tensor(output)  # element 0 of a tuple output (transformer blocks)
            fmap = self.feature_map(tensor, size)
            probed = probe(fmap)
            if fmap is tensor:  # an NCHW layer: Captum differentiates w.r.t. the output itself
                return None
            # output + R^T(p - p.detach()): the same value, and d(logit)/dp = R(d(logit)/d output) for the linear
            # reading R, so Captum sees the feature map and its gradient exactly as the native gradcam does.
            with torch.enable_grad():
                leaf = tensor.detach().requires_grad_(True)
                (adjoint,) = torch.autograd.grad(
                    self.feature_map(leaf, size), leaf, grad_outputs=probed - probed.detach(), create_graph=True
                )
            return with_layer_tensor(output, tensor + adjoint)

        handle = self.layer.register_forward_hook(read_through_probe)
        try:
            return LayerGradCam(self.logits_model, probe).attribute(
                inputs, target=targets, relu_attributions=self.relu_attributions
            )
        finally:
            handle.remove()

    def extra_repr(self) -> str:
        return f"relu_attributions={self.relu_attributions}"

