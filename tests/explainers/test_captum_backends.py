"""The Captum backends add no distortion: each equals calling Captum directly, then the same reduction and min-max."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exaug
from exaug.augment import gaussian_blur
from exaug.explainers import normalize_saliency
from exaug.explainers.captum_backends import CHANNEL_REDUCTIONS, reduce_channels

captum_attr = pytest.importorskip("captum.attr")

# The direct Captum calls below warn about their ReLU hooks (the wrappers silence it).
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")

TARGETS = torch.tensor([3, 0, 7])


def seed_all(seed: int = 0) -> None:
    """Captum draws from both global RNGs (torch for noise, numpy for GradientSHAP's coefficients)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def expected_map(attributions: torch.Tensor, how: str = "abs_sum") -> torch.Tensor:
    """What the wrapper must return for raw Captum ``attributions``: reduce, then per-sample min-max."""
    return normalize_saliency(reduce_channels(attributions.detach(), how).float())[0]


def leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def direct_cases(x: torch.Tensor):
    """``(name, options, direct Captum call)`` triples with the same options on both sides."""
    value_range = float(x.max() - x.min())
    return [
        ("saliency", {}, lambda m: captum_attr.Saliency(m).attribute(leaf(x), target=TARGETS, abs=True)),
        ("input_x_gradient", {}, lambda m: captum_attr.InputXGradient(m).attribute(leaf(x), target=TARGETS)),
        ("guided_backprop", {}, lambda m: captum_attr.GuidedBackprop(m).attribute(leaf(x), target=TARGETS)),
        ("deconvolution", {}, lambda m: captum_attr.Deconvolution(m).attribute(leaf(x), target=TARGETS)),
        (
            "integrated_gradients",
            {"n_steps": 8},
            lambda m: captum_attr.IntegratedGradients(m).attribute(
                leaf(x), baselines=torch.zeros_like(x), target=TARGETS, n_steps=8
            ),
        ),
        (
            "integrated_gradients",
            {"n_steps": 6, "baseline": "blur", "method": "riemann_trapezoid", "internal_batch_size": 5},
            lambda m: captum_attr.IntegratedGradients(m).attribute(
                leaf(x), baselines=gaussian_blur(x), target=TARGETS, n_steps=6, method="riemann_trapezoid",
                internal_batch_size=5,
            ),
        ),
        (
            "integrated_gradients",
            {"n_steps": 4, "baseline": 0.5},
            lambda m: captum_attr.IntegratedGradients(m).attribute(leaf(x), baselines=0.5, target=TARGETS, n_steps=4),
        ),
        (
            "smoothgrad",
            {"nt_samples": 4, "noise_level": 0.2},
            lambda m: captum_attr.NoiseTunnel(captum_attr.Saliency(m)).attribute(
                leaf(x), nt_type="smoothgrad", nt_samples=4, stdevs=0.2 * value_range, target=TARGETS, abs=False
            ),
        ),
        (
            "smoothgrad",
            {"nt_samples": 5, "nt_samples_batch_size": 2, "stdevs": 0.3},
            lambda m: captum_attr.NoiseTunnel(captum_attr.Saliency(m)).attribute(
                leaf(x), nt_type="smoothgrad", nt_samples=5, nt_samples_batch_size=2, stdevs=0.3, target=TARGETS,
                abs=False,
            ),
        ),
        (
            "gradient_shap",
            {"n_samples": 4, "baselines": "zero", "stdevs": 0.1},
            # A one-row distribution is the same per-sample zero baseline (and draws the same random numbers).
            lambda m: captum_attr.GradientShap(m).attribute(
                leaf(x), baselines=torch.zeros_like(x[:1]), n_samples=4, stdevs=0.1, target=TARGETS
            ),
        ),
        (
            "gradient_shap",
            {"n_samples": 4, "baselines": torch.cat([torch.zeros_like(x[:1]), x.flip(0)])},
            lambda m: captum_attr.GradientShap(m).attribute(
                leaf(x), baselines=torch.cat([torch.zeros_like(x[:1]), x.flip(0)]), n_samples=4, target=TARGETS
            ),
        ),
        (
            "occlusion",
            {"window": 6, "stride": 3, "perturbations_per_eval": 4},
            lambda m: captum_attr.Occlusion(m).attribute(
                x, sliding_window_shapes=(3, 6, 6), strides=(3, 3, 3), baselines=0.0, target=TARGETS,
                perturbations_per_eval=4,
            ),
        ),
        (
            "occlusion",
            {"baseline": "blur"},
            lambda m: captum_attr.Occlusion(m).attribute(
                x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=gaussian_blur(x), target=TARGETS
            ),
        ),
    ]


# Building the cases is cheap (the calls are lambdas), so the ids come from the same list.
CASE_IDS = [f"{c[0]}-{i}" for i, c in enumerate(direct_cases(torch.zeros(3, 3, 16, 16)))]


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_pixel_backends_equal_direct_captum(case, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    name, options, direct = direct_cases(x)[case]
    seed_all()
    ours = exaug.create_explainer(name, tiny_resnet64, **options).explain(x, TARGETS)
    seed_all()
    reference = direct(copy.deepcopy(tiny_resnet64))
    assert not ours.flat.any()
    torch.testing.assert_close(ours.saliency, expected_map(reference), rtol=0, atol=1e-6)


@pytest.mark.parametrize("relu", [False, True])
def test_layer_gradcam_equals_direct_captum(relu, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    ours = exaug.create_explainer(
        "captum.layer_gradcam", tiny_resnet64, target_layer="layer1", relu_attributions=relu
    ).explain(x, TARGETS)
    model = copy.deepcopy(tiny_resnet64)
    raw = captum_attr.LayerGradCam(model, model.layer1).attribute(leaf(x), target=TARGETS, relu_attributions=relu)
    reference = normalize_saliency(F.interpolate(raw.detach().float(), size=(16, 16), mode="bilinear"))[0]
    torch.testing.assert_close(ours.saliency, reference, rtol=0, atol=1e-6)


def test_layer_gradcam_with_relu_equals_native_gradcam(tiny_resnet64):
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    captum_map = exaug.create_explainer("captum.layer_gradcam", tiny_resnet64, relu_attributions=True)(x, 2)
    native = exaug.create_explainer("gradcam", tiny_resnet64)(x, 2)
    torch.testing.assert_close(captum_map, native, rtol=0, atol=1e-6)


@pytest.mark.parametrize("how", CHANNEL_REDUCTIONS)
def test_channel_reduction_options(how, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    ours = exaug.create_explainer("input_x_gradient", tiny_resnet64, channel_reduction=how)(x, TARGETS)
    raw = captum_attr.InputXGradient(copy.deepcopy(tiny_resnet64)).attribute(leaf(x), target=TARGETS)
    torch.testing.assert_close(ours, expected_map(raw, how), rtol=0, atol=1e-6)


def test_reduce_channels_definitions():
    a = torch.tensor([1.0, -3.0, 2.0]).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    a[1] = -a[1]
    assert reduce_channels(a, "abs_sum")[:, 0, 0, 0].tolist() == [6.0, 6.0]
    assert reduce_channels(a, "sum")[:, 0, 0, 0].tolist() == [0.0, 0.0]
    b = torch.tensor([2.0, -3.0]).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    assert reduce_channels(b, "positive_sum")[:, 0, 0, 0].tolist() == [6.0, 0.0]
    torch.testing.assert_close(reduce_channels(a, "l2")[:, 0, 0, 0], torch.full((2,), 14.0).sqrt())
    assert reduce_channels(a, "sum").shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="channel_reduction must be one of"):
        reduce_channels(a, "max")
    with pytest.raises(ValueError, match="channel_reduction must be one of"):
        exaug.create_explainer("saliency", nn.Linear(1, 1), channel_reduction="mean")


def test_integrated_gradients_completeness(tiny_resnet64):
    """sum(IG) = f(x) - f(baseline) for the target logit, up to the quadrature error (raw Captum output)."""
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    for baseline in ("zero", "blur"):
        explainer = exaug.create_explainer("integrated_gradients", tiny_resnet64, n_steps=64, baseline=baseline)
        attributions = explainer.attributions(leaf(x), TARGETS)
        reference = gaussian_blur(x) if baseline == "blur" else torch.zeros_like(x)
        with torch.no_grad():
            delta = (tiny_resnet64(x) - tiny_resnet64(reference)).gather(1, TARGETS[:, None]).squeeze(1)
        total = attributions.sum(dim=(1, 2, 3))
        assert delta.abs().min() > 1e-3
        torch.testing.assert_close(total, delta, rtol=1e-2, atol=1e-4)


def test_gradient_shap_zero_plus_blur_is_the_stratified_mixture():
    """On a linear model the gradient is constant, so every draw gives (x - b) * w exactly, whatever the random
    coefficients: the default baselines must give (x - (0 + blur(x)) / 2) * w."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5)).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    targets = torch.tensor([1, 4])
    explainer = exaug.create_explainer("gradient_shap", model, n_samples=3, channel_reduction="sum")
    raw = explainer.attributions(leaf(x), targets)
    w = model[1].weight.detach()[targets].view_as(x)
    torch.testing.assert_close(raw, (x - gaussian_blur(x) / 2) * w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(explainer(x, targets), expected_map((x - gaussian_blur(x) / 2) * w, "sum"))


def test_smoothgrad_noise_is_relative_to_the_value_range():
    x = torch.linspace(-2.0, 3.0, 2 * 3 * 4 * 4).view(2, 3, 4, 4)
    smooth = exaug.create_explainer("smoothgrad", nn.Linear(1, 1), noise_level=0.1)
    assert smooth.noise_std(x) == pytest.approx(0.5)
    assert exaug.create_explainer("smoothgrad", nn.Linear(1, 1), stdevs=0.25).noise_std(x) == 0.25


def relu_reference(model: nn.Module, rule: str) -> nn.Module:
    """Copy of ``model`` with every ``nn.ReLU`` replaced by a fresh module whose backward applies ``rule`` per call."""

    class ModifiedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            if rule == "guided":
                return grad.clamp_min(0) * (x > 0)
            return grad.clamp_min(0)  # deconvolution ignores the forward mask

    class Wrapped(nn.Module):
        def forward(self, x):
            return ModifiedReLU.apply(x)

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, Wrapped())
    return model


@pytest.mark.parametrize("name,rule", [("guided_backprop", "guided"), ("deconvolution", "deconv")])
def test_modified_relu_methods_are_exact_with_reused_relu_modules(name, rule, resnet18_cifar10):
    """torchvision's BasicBlock calls its one ``relu`` module twice; Captum's hooks must still act per call."""
    model = resnet18_cifar10.double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([1, 8])
    ours = exaug.create_explainer(name, model).attributions(leaf(x), targets)
    reference_model = relu_reference(model, rule)
    inp = leaf(x)
    reference_model(inp).gather(1, targets[:, None]).sum().backward()
    torch.testing.assert_close(ours, inp.grad, rtol=1e-9, atol=1e-12)


def test_option_validation():
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="baseline must be one of"):
        exaug.create_explainer("integrated_gradients", model, baseline="mean")
    with pytest.raises(ValueError, match="baselines must be one of"):
        exaug.create_explainer("gradient_shap", model, baselines="noise")
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        exaug.create_explainer("integrated_gradients", model, n_steps=0)
    with pytest.raises(ValueError, match="must not exceed window"):
        exaug.create_explainer("occlusion", model, window=4, stride=5)
    with pytest.raises(ValueError, match="does not use a target_layer"):
        exaug.create_explainer("saliency", nn.Sequential(nn.Linear(1, 1)), target_layer="0")


def test_occlusion_window_larger_than_image_and_bad_baseline_shape(tiny_resnet):
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match="larger than the images"):
        exaug.create_explainer("occlusion", tiny_resnet, window=8)(x)
    with pytest.raises(ValueError, match="baseline tensor must have shape"):
        exaug.create_explainer("integrated_gradients", tiny_resnet, baseline=torch.zeros(3, 5, 5))(x)
