"""Corruptions: valid range, seeding, severity monotonic in distance from the clean image."""

from __future__ import annotations

import pytest
import torch

from exaug.metrics import CORRUPTIONS, SEVERITY_PARAMETERS, corrupt, corruption_accuracy
from exaug.testing import assert_same_state, snapshot_state


def smooth_images(n=4, size=32, seed=0):
    """Natural-looking inputs: a coarse random image upsampled (JPEG and blur act on structure, not on noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_range_and_severity_monotonic(name):
    x = smooth_images()
    distances = []
    for severity in range(1, 6):
        y = corrupt(x, name, severity, seed=0)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and torch.isfinite(y).all()
        distances.append(float((y - x).abs().mean()))
    assert distances[0] > 0
    assert all(a <= b + 1e-7 for a, b in zip(distances, distances[1:])), distances


def test_seeded_noise_leaves_global_rng_untouched():
    x = smooth_images()
    state = torch.get_rng_state()
    a = corrupt(x, "gaussian_noise", 3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, corrupt(x, "gaussian_noise", 3, seed=5))
    assert not torch.equal(a, corrupt(x, "gaussian_noise", 3, seed=6))


def test_parameters_documented_for_every_corruption():
    assert set(SEVERITY_PARAMETERS) == set(CORRUPTIONS)
    assert all(len(v) == 5 for v in SEVERITY_PARAMETERS.values())


def test_corruption_accuracy_and_untouched_model(cnn, labels):
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    x = (smooth_images(6, 16) - 0.5) / 0.25
    before = snapshot_state(cnn)
    out = corruption_accuracy(cnn, x, labels, mean=mean, std=std, corruptions=["contrast", "jpeg"], severities=(1, 5))
    assert_same_state(before, snapshot_state(cnn))
    assert set(out) == {"contrast", "jpeg"} and set(out["jpeg"]) == {1, 5}
    assert all(0 <= float(v) <= 1 for d in out.values() for v in d.values())


def test_errors():
    x = smooth_images(1, 16)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "contrast", 6)
    with pytest.raises(ValueError, match="RGB"):
        corrupt(x[:, :1], "jpeg", 1)
    with pytest.raises(ValueError, match="empty"):
        corrupt(x[:0], "contrast", 1)
