from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from exaug.augment import ReplayableSpatial
from exaug.losses import CGCLoss, cgc_heatmaps


def naive_cgc(transformed: torch.Tensor, augmented: torch.Tensor, t: float) -> float:
    """Reference: per-anchor InfoNCE written as plain loops over Python floats."""
    b = transformed.shape[0]
    a = [v / max(v.norm().item(), 1e-12) for v in transformed.flatten(1).double()]
    g = [v / max(v.norm().item(), 1e-12) for v in augmented.flatten(1).double()]
    total = 0.0
    for i in range(b):
        sims = [float(a[i] @ g[j]) / t for j in range(b)]
        total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    return total / b


class SmallCNN(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 4)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.mark.parametrize("t", [0.5, 0.1])
@pytest.mark.parametrize("shape", [(7, 1, 6, 5), (3, 20), (1, 1, 4, 4)])
def test_matches_naive_loop(t, shape):
    torch.manual_seed(0)
    transformed, augmented = torch.rand(shape), torch.rand(shape)
    loss = CGCLoss(temperature=t)(transformed, augmented)
    assert loss.item() == pytest.approx(naive_cgc(transformed, augmented, t), rel=1e-5, abs=1e-6)


def test_matched_maps_beat_shuffled_maps():
    torch.manual_seed(0)
    maps = torch.rand(8, 1, 8, 8) ** 4
    loss = CGCLoss()
    assert loss(maps, maps) < loss(maps, maps.roll(1, 0))


def test_zero_maps_are_finite():
    maps = torch.zeros(5, 1, 4, 4)  # Grad-CAM after ReLU can be all zero
    assert CGCLoss()(maps, maps).item() == pytest.approx(math.log(5))


def test_gradients_reach_the_parameters_through_the_heatmaps():
    """The CGC term alone (no CE) must train the model, and the classifier's weights reach the maps *only*
    through the gradient that Grad-CAM is made of: a non-zero fc gradient proves the second-order path. A central
    finite difference in float64 checks its value."""
    torch.manual_seed(0)
    model = SmallCNN(torch.float64).train()
    x = torch.rand(6, 3, 12, 12, dtype=torch.float64)
    torch.manual_seed(1)
    spatial = ReplayableSpatial()
    params = spatial.sample(x)
    criterion = CGCLoss(0.5)

    def loss_fn() -> torch.Tensor:
        maps, _, predicted = cgc_heatmaps(model, model.features[4], x)
        aug_maps, _, _ = cgc_heatmaps(model, model.features[4], spatial.apply(x, params), predicted)
        return criterion(spatial.apply(maps, params), aug_maps)

    model.eval()  # BatchNorm statistics fixed, so the finite difference sees the same function
    loss = loss_fn()
    loss.backward()
    grad = model.fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.features[0].weight.grad.abs().sum() > 0
    direction = torch.randn_like(model.fc.weight)
    eps = 1e-6
    with torch.no_grad():
        model.fc.weight += eps * direction
        up = loss_fn().item()
        model.fc.weight -= 2 * eps * direction
        down = loss_fn().item()
        model.fc.weight += eps * direction
    assert (up - down) / (2 * eps) == pytest.approx(float((grad * direction).sum()), rel=1e-4, abs=1e-8)


def test_cgc_heatmaps_contract():
    torch.manual_seed(0)
    model = SmallCNN().train()
    x = torch.rand(4, 3, 12, 12)
    maps, logits, targets = cgc_heatmaps(model, model.features[4], x)
    assert maps.shape == (4, 1, 12, 12) and (maps >= 0).all()
    assert torch.allclose(maps.sum(dim=(1, 2, 3)), torch.ones(4), atol=1e-4)
    assert logits.requires_grad and maps.requires_grad  # the training forward: CE and CGC share it
    assert torch.equal(targets, logits.argmax(1))
    assert model.features[0]._forward_hooks == {} and model._forward_hooks == {}  # no hook left behind
    fixed = torch.tensor([0, 1, 2, 3])
    assert torch.equal(cgc_heatmaps(model, model.features[4], x, fixed)[2], fixed)


def test_input_validation():
    loss = CGCLoss()
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 5))
    with pytest.raises(ValueError, match="non-empty"):
        loss(torch.rand(0, 4), torch.rand(0, 4))
    with pytest.raises(ValueError, match="`transformed`"):
        loss(torch.rand(3), torch.rand(3))
    with pytest.raises(ValueError, match="floating-point"):
        loss(torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, 4), float("nan")), torch.rand(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        CGCLoss(temperature=0.0)
    assert "temperature=0.5" in repr(CGCLoss())
