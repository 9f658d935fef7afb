from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug.augment import ReplayableSpatial
from exaug.losses import cgc_heatmaps


class PointwiseNet(nn.Module):
    """1x1 conv -> (optional ReLU) -> global average pool -> linear: every spatial position is treated alike, so
    its Grad-CAM is a pointwise function of the input pixel and commutes with crops, resizes and flips."""

    def __init__(self, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():  # positive weights and inputs: the map is positive, so Grad-CAM's ReLU is inactive
            self.conv.weight.uniform_(0.1, 1.0)
            self.conv.bias.uniform_(0.0, 0.2)
            self.fc.weight.uniform_(0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_replay_is_deterministic_and_channel_agnostic():
    torch.manual_seed(0)
    spatial = ReplayableSpatial()
    x = torch.rand(6, 3, 24, 24)
    out, params = spatial(x)
    assert out.shape == x.shape
    assert torch.equal(spatial.apply(x, params), out)
    # A one-channel map goes through exactly the same crop and flip as each image channel.
    assert torch.allclose(spatial.apply(x[:, 1:2], params), out[:, 1:2], atol=1e-6)


def test_full_crop_is_identity_or_flip():
    torch.manual_seed(1)
    spatial = ReplayableSpatial(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    x = torch.rand(8, 1, 16, 16)
    out, params = spatial(x)
    expected = torch.where(params.flipped.view(-1, 1, 1, 1), x.flip(-1), x)
    assert torch.allclose(out, expected, atol=1e-5)
    assert 0 < params.flipped.sum() < 8


def test_output_size_option():
    spatial = ReplayableSpatial(size=8)
    out, params = spatial(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, 3, 8, 8)
    assert spatial.apply(torch.rand(2, 1, 16, 16), params).shape == (2, 1, 8, 8)


def _transform_then_explain_vs_explain_then_transform(model: nn.Module, x: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    spatial = ReplayableSpatial(scale=(0.08, 1.0))
    augmented, params = spatial(x)
    layer = model.act if isinstance(model.act, nn.ReLU) else model.conv  # the map after the nonlinearity
    maps, _, predicted = cgc_heatmaps(model, layer, x)
    aug_maps, _, _ = cgc_heatmaps(model, layer, augmented, predicted)
    moved = spatial.apply(maps, params)
    # CGC compares L2-normalised maps, so the sum-normalisation constants do not matter.
    return F.normalize(moved.flatten(1), dim=1), F.normalize(aug_maps.flatten(1), dim=1)


def test_heatmaps_are_equivariant_for_a_pointwise_model():
    """Exact case: without a nonlinearity the map is an affine function of each pixel, and bilinear resampling
    (weights summing to 1) commutes with affine pointwise maps. The only error is float32 rounding: tolerance
    1e-5 on unit vectors."""
    torch.manual_seed(0)
    model = PointwiseNet(relu=False)
    x = torch.rand(6, 3, 20, 20)
    a, b = _transform_then_explain_vs_explain_then_transform(model, x, seed=3)
    assert (a - b).abs().max() < 1e-5


def test_heatmaps_nearly_equivariant_with_relu_on_smooth_images():
    """With a ReLU the map is a nonlinear pointwise function f of each pixel and f(interp(x)) != interp(f(x)) where
    interpolated neighbours straddle a kink. On smooth images (bilinear upsampling of a 5x5 grid) neighbours
    differ by a few percent of the range and few pixels straddle a kink, so the maps agree to cosine > 0.9999
    (measured: 0.999999). Positive maps share a large constant component, so even unrelated maps reach ~0.993:
    the shuffled control checks that the threshold separates matched from unmatched pairs."""
    torch.manual_seed(0)
    model = PointwiseNet(relu=True)
    with torch.no_grad():
        model.conv.weight[:2] *= -1  # some channels cross zero inside the image
        model.conv.bias.fill_(0.5)
    x = F.interpolate(torch.rand(8, 3, 5, 5), size=32, mode="bilinear", align_corners=False)
    a, b = _transform_then_explain_vs_explain_then_transform(model, x, seed=4)
    cosine = (a * b).sum(1)
    assert (cosine > 0.9999).all(), cosine
    assert ((a * b.roll(1, 0)).sum(1) < 0.9999).all()


def test_errors():
    spatial = ReplayableSpatial()
    _, params = spatial(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="same batch and spatial size"):
        spatial.apply(torch.rand(2, 1, 8, 8), params)
    with pytest.raises(ValueError, match="same batch and spatial size"):
        spatial.apply(torch.rand(3, 1, 16, 16), params)
    with pytest.raises(ValueError, match="x must have shape"):
        spatial.apply(torch.rand(2, 16, 16), params)
    with pytest.raises(ValueError, match="scale"):
        ReplayableSpatial(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip_p"):
        ReplayableSpatial(flip_p=2.0)
