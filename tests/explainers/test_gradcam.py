from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from exaug import create_explainer
from exaug.explainers import grad_cam, normalize_saliency


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def naive_gradcam(model: nn.Module, layer_name: str, x: torch.Tensor, targets: torch.Tensor, relu: bool) -> torch.Tensor:
    """Textbook Grad-CAM, one image at a time with a full backward and retain_grad."""
    model = copy.deepcopy(model).eval()
    layer = dict(model.named_modules())[layer_name]
    maps = []
    for i in range(x.shape[0]):
        acts = {}
        handle = layer.register_forward_hook(lambda m, inp, out: acts.setdefault("a", out))
        logits = model(x[i : i + 1])
        handle.remove()
        a = acts["a"]
        a.retain_grad()
        model.zero_grad()
        logits[0, targets[i]].backward()
        w = a.grad.mean(dim=(2, 3), keepdim=True)
        cam = (w * a).sum(1, keepdim=True)
        cam = F.relu(cam) if relu else cam
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        lo, hi = cam.min(), cam.max()
        maps.append(torch.zeros_like(cam) if hi - lo == 0 else (cam - lo) / (hi - lo))
    return torch.cat(maps).detach()


@pytest.mark.parametrize("relu", [True, False])
def test_matches_naive_textbook_loop(relu):
    model = small_cnn().double()
    x = torch.randn(6, 3, 12, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ours = create_explainer("gradcam", model, target_layer="3", relu=relu).explain(x, y)
    ref = naive_gradcam(model, "3", x, y, relu)
    torch.testing.assert_close(ours.saliency.double(), ref, atol=1e-6, rtol=0)


def test_predicted_targets_and_logits():
    model = small_cnn()
    x = torch.randn(5, 3, 12, 12)
    exp = create_explainer("gradcam", model).explain(x)
    with torch.no_grad():
        logits = model.eval()(x)
    assert torch.equal(exp.targets, logits.argmax(1))
    torch.testing.assert_close(exp.logits, logits)


def test_default_layer_skips_1x1_feature_maps():
    """torchvision's ResNet at 32x32 has a 1x1 layer4: its Grad-CAM is constant, so layer3 is chosen."""
    model = torchvision.models.resnet18(num_classes=10)
    explainer = create_explainer("gradcam", model)
    assert "chosen on first call" in repr(explainer)
    explainer(torch.randn(2, 3, 32, 32))
    assert explainer.layer_name == "layer3" and "(auto)" in repr(explainer)
    at64 = create_explainer("gradcam", torchvision.models.resnet18(num_classes=10))
    at64(torch.randn(2, 3, 64, 64))
    assert at64.layer_name == "layer4"


def test_one_by_one_layer_gives_flat_zero_maps():
    model = torchvision.models.resnet18(num_classes=10)
    exp = create_explainer("gradcam", model, target_layer="layer4").explain(torch.randn(3, 3, 32, 32))
    assert exp.flat.all() and torch.all(exp.saliency == 0)


def test_frozen_model_and_no_grad_caller():
    model = small_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        sal = create_explainer("gradcam", model, target_layer="3")(x, torch.tensor([0, 1, 2]))
    assert sal.shape == (3, 1, 12, 12) and not sal.requires_grad
    assert torch.is_grad_enabled()  # the caller's grad mode is restored after the block


def test_create_graph_gives_second_order_gradients():
    """CGC trains through the heatmap: the raw map must be differentiable w.r.t. the parameters."""
    model = small_cnn().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    layer = model[3]
    cam, _, _ = grad_cam(model, layer, x, torch.tensor([1, 2]), create_graph=True)
    assert cam.requires_grad
    cam.sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    assert model[8].weight.grad is not None and model[8].weight.grad.abs().sum() > 0
    # The differentiable map equals the detached one.
    ref, _, _ = grad_cam(model, layer, x, torch.tensor([1, 2]))
    torch.testing.assert_close(cam.detach(), ref)


def test_normalize_saliency_edge_cases():
    raw = torch.stack([
        torch.full((1, 3, 3), 5.0),                     # constant
        torch.arange(9.0).view(1, 3, 3),                # regular
        torch.full((1, 3, 3), 1.0) + torch.arange(9.0).view(1, 3, 3) * 1e-9,  # flat up to rounding
        torch.tensor([float("nan")] + [1.0] * 8).view(1, 3, 3),  # non-finite
    ])
    sal, flat = normalize_saliency(raw)
    assert flat.tolist() == [True, False, True, True]
    assert torch.isfinite(sal).all() and torch.all(sal[flat] == 0)
    assert sal[1].min() == 0 and sal[1].max() == 1
    again, _ = normalize_saliency(sal)
    torch.testing.assert_close(again, sal)  # idempotent


def test_layer_path_errors():
    model = small_cnn()
    with pytest.raises(ValueError, match="not a submodule.*Did you mean '3'"):
        create_explainer("gradcam", model, target_layer="33")
    with pytest.raises(ValueError, match="not part of the model"):
        create_explainer("gradcam", model, target_layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="does not use a target_layer"):
        create_explainer("random", model, target_layer="3")
