"""ECE against a naive loop and analytic cases; FGSM / PGD ranges, eps = 0, and model isolation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exaug.metrics import (
    AdversarialAccuracy, CalibrationError, adversarial_accuracy, expected_calibration_error, fgsm, pgd,
    plot_reliability, reliability_bins,
)
from exaug.testing import assert_same_state, snapshot_state

MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)


class ConstantClassifier(torch.nn.Module):
    """Logits that ignore the input (kept in the graph, so attacks get a zero gradient)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0.0 * x.flatten(1).sum(dim=1, keepdim=True)


def naive_ece(logits, targets, n_bins):
    probs = logits.double().softmax(dim=1)
    conf = probs.max(dim=1).values.tolist()
    correct = (probs.argmax(dim=1) == targets).tolist()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).tolist()
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        members = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            mean_conf = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def pixel_images(n=6, seed=0):
    """Normalised images whose pixels lie strictly inside [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    pixels = 0.02 + 0.96 * torch.rand(n, 3, 16, 16, generator=g)
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_pixels(x):
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_naive_loop_and_streaming(n_bins):
    g = torch.Generator().manual_seed(1)
    logits, targets = 3 * torch.randn(200, 4, generator=g), torch.randint(0, 4, (200,), generator=g)
    expected = naive_ece(logits, targets, n_bins)
    assert float(expected_calibration_error(logits, targets, n_bins)) == pytest.approx(expected, abs=1e-12)
    metric = CalibrationError(n_bins)
    for chunk_l, chunk_t in zip(logits.split(37), targets.split(37)):
        metric.update(chunk_l, chunk_t)
    assert metric.compute() == pytest.approx(expected, abs=1e-12)


def test_constant_classifier_ece_is_accuracy_gap():
    logits = torch.tensor([2.0, 0.5, -1.0]).expand(30, -1)
    targets = torch.tensor([0] * 12 + [1] * 18)
    conf = float(torch.tensor([2.0, 0.5, -1.0]).softmax(0)[0])
    assert float(expected_calibration_error(logits, targets)) == pytest.approx(abs(12 / 30 - conf))
    assert float(expected_calibration_error(logits, torch.zeros(30, dtype=torch.long))) == pytest.approx(1 - conf)


def test_reliability_bins_and_plot(tmp_path):
    g = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(64, 3, generator=g), torch.randint(0, 3, (64,), generator=g)
    bins = reliability_bins(logits, targets, n_bins=5)
    assert bins["count"].sum() == 64 and bins["edges"].numel() == 6
    assert torch.all((bins["confidence"] >= 0) & (bins["confidence"] <= 1))
    path = plot_reliability(bins, tmp_path / "plots" / "reliability.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fgsm_eps_zero_changes_nothing(cnn, labels):
    x = pixel_images()
    assert torch.equal(fgsm(cnn, x, labels, eps=0.0, mean=MEAN, std=STD), x)
    assert torch.equal(pgd(cnn, x, labels, eps=0.0, mean=MEAN, std=STD), x)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attack_stays_in_ball_and_valid_range(cnn, labels, attack):
    x = pixel_images()
    eps = 8 / 255
    kwargs = dict(alpha=2 / 255, steps=4) if attack == "pgd" else {}
    adv = (fgsm if attack == "fgsm" else pgd)(cnn, x, labels, eps=eps, mean=MEAN, std=STD, **kwargs)
    pixels, adv_pixels = to_pixels(x), to_pixels(adv)
    assert adv_pixels.min() >= -1e-6 and adv_pixels.max() <= 1 + 1e-6
    assert (adv_pixels - pixels).abs().max() <= eps + 1e-6
    if attack == "fgsm":  # every pixel moves by exactly eps unless clamped at the border (or a zero gradient)
        moved = (adv_pixels - pixels).abs()
        assert torch.isclose(moved, torch.full_like(moved, eps), atol=1e-5).float().mean() > 0.9
    model = type(cnn)()
    model.load_state_dict(cnn.state_dict())
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(adv), labels) > F.cross_entropy(model(x), labels)


def test_attack_matches_manual_fgsm_and_leaves_model_untouched(cnn, labels):
    x = pixel_images()
    before = snapshot_state(cnn)
    adv = fgsm(cnn, x, labels, eps=4 / 255, mean=MEAN, std=STD)
    assert_same_state(before, snapshot_state(cnn))  # including the .grad tensors the user accumulated
    model = type(cnn)()
    model.load_state_dict(cnn.state_dict())
    model.eval()
    pixels = to_pixels(x).requires_grad_(True)
    std, mean = torch.tensor(STD).view(1, 3, 1, 1), torch.tensor(MEAN).view(1, 3, 1, 1)
    F.cross_entropy(model((pixels - mean) / std), labels, reduction="sum").backward()
    expected = (pixels + 4 / 255 * pixels.grad.sign()).clamp(0, 1).detach()
    torch.testing.assert_close(to_pixels(adv), expected, atol=1e-6, rtol=0)


def test_pgd_is_seeded_and_accuracy_helpers(cnn, labels):
    x = pixel_images()
    state = torch.get_rng_state()
    a = pgd(cnn, x, labels, steps=2, mean=MEAN, std=STD, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, pgd(cnn, x, labels, steps=2, mean=MEAN, std=STD, seed=1))
    acc = adversarial_accuracy(cnn, x, labels, "pgd", steps=2, mean=MEAN, std=STD)
    metric = AdversarialAccuracy(cnn, "pgd", steps=2, mean=MEAN, std=STD)
    metric.update(x, labels)
    assert metric.compute() == pytest.approx(float(acc))
    constant = ConstantClassifier(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))
    # Zero input gradient: nothing moves, accuracy is the clean one (a single-class batch here).
    assert float(adversarial_accuracy(constant, x, torch.zeros(6, dtype=torch.long), mean=MEAN, std=STD)) == 1.0


def test_errors(cnn, labels):
    with pytest.raises(ValueError, match="empty"):
        expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationError(0)
    with pytest.raises(ValueError, match="empty"):
        fgsm(cnn, torch.zeros(0, 3, 16, 16), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="std"):
        fgsm(cnn, pixel_images(), labels, std=(1.0, 1.0))
    with pytest.raises(ValueError, match="attack"):
        adversarial_accuracy(cnn, pixel_images(), labels, "cw")
    with pytest.raises(RuntimeError, match="before any update"):
        CalibrationError().compute()
