"""Insertion / deletion: batched chunks against a naive per-image, per-step loop, and analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from exaug.augment.masking import gaussian_blur
from exaug.metrics import (
    InsertionDeletion,
    class_probability_score,
    insertion_deletion,
    representation_similarity_score,
    step_counts,
)
from exaug.testing import assert_same_state, snapshot_state



class LinearScore(torch.nn.Module):
    """``f(x) = <w, x>``: the true importance of pixel p (zero baseline) is ``sum_c w[c, p] x[c, p]``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1, keepdim=True)


def naive_curve(score_one, image, saliency, baseline, counts, mode):
    """One step image at a time; pixel order from Python's stable sort."""
    values = saliency.flatten().tolist()
    order = sorted(range(len(values)), key=lambda i: -values[i])
    curve = []
    for k in counts:
        changed = torch.zeros(len(values), dtype=torch.bool)
        changed[order[:k]] = True
        changed = changed.view(1, *image.shape[-2:])
        x = torch.where(changed, baseline, image) if mode == "deletion" else torch.where(changed, image, baseline)
        curve.append(score_one(x))
    n = len(counts) - 1
    auc = sum((curve[t] + curve[t + 1]) / 2 for t in range(n)) / n  # textbook trapezoid on [0, 1]
    return auc, curve


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
@pytest.mark.parametrize("schedule", [dict(steps=8), dict(pixels_per_step=50)])
def test_matches_naive_loop(cnn, images, mode, schedule):
    saliency = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([0, 1, 2, 3, 4, 1])
    score = class_probability_score(cnn, targets)
    result = insertion_deletion(score, images, saliency, mode=mode, batch_size=5, **schedule)
    counts = step_counts(256, **schedule).tolist()
    blurred = gaussian_blur(images)
    for i in range(6):
        def score_one(x, i=i):
            return float(score(x[None], torch.tensor([i]))[0])

        auc, curve = naive_curve(score_one, images[i], saliency[i], blurred[i], counts, mode)
        assert float(result.auc[i]) == pytest.approx(auc, abs=1e-5)
        torch.testing.assert_close(result.curves[i], torch.tensor(curve), atol=1e-5, rtol=0)
    assert result.x[0] == 0 and result.x[-1] == 1 and result.x.numel() == len(counts)


def test_step_schedules():
    assert step_counts(256, steps=4).tolist() == [0, 64, 128, 192, 256]
    assert step_counts(10, steps=3).tolist() == [0, 3, 7, 10]
    assert step_counts(256, pixels_per_step=100).tolist() == [0, 100, 200, 256]  # RISE: last step partial
    with pytest.raises(ValueError, match="pixels_per_step"):
        step_counts(10, pixels_per_step=0)


def test_constant_score_gives_that_constant(images):
    result = insertion_deletion(lambda x, rows: torch.full((x.shape[0],), 0.37), images, torch.rand(6, 1, 16, 16))
    torch.testing.assert_close(result.auc, torch.full((6,), 0.37))


def test_chunk_size_does_not_change_the_result(cnn, images):
    score = class_probability_score(cnn, torch.zeros(6, dtype=torch.long))
    saliency = torch.rand(6, 1, 16, 16)
    a = insertion_deletion(score, images, saliency, steps=10, batch_size=3)
    b = insertion_deletion(score, images, saliency, steps=10, batch_size=1000)
    torch.testing.assert_close(a.curves, b.curves)


def test_deletion_with_true_importance_beats_random_order():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 3, 16, 16, generator=g)
    model = LinearScore(weight)
    images = torch.randn(8, 3, 16, 16, generator=g)
    # f(x) - f(0) = sum_p w_p x_p: the exact contribution of each pixel (summed over channels), zero baseline.
    importance = (weight * images).sum(dim=1, keepdim=True)

    def score(x, rows):
        with torch.no_grad():
            return model(x)[:, 0]

    options = dict(mode="deletion", baseline="zero", steps=16)
    true = insertion_deletion(score, images, importance, **options)
    random = insertion_deletion(score, images, torch.rand(8, 1, 16, 16, generator=g), **options)
    inverse = insertion_deletion(score, images, -importance, **options)
    assert torch.all(true.auc < random.auc) and torch.all(random.auc < inverse.auc)
    # Endpoints: the image itself, then the baseline (f(0) = 0).
    torch.testing.assert_close(true.curves[:, 0], score(images, None))
    torch.testing.assert_close(true.curves[:, -1], torch.zeros(8), atol=1e-5, rtol=0)


def test_representation_similarity_score(cnn, images):
    encoder = torch.nn.Sequential(cnn.block1, cnn.block2)
    references = encoder.eval()(images).flatten(1).detach()
    cnn.train()
    score = representation_similarity_score(encoder, references)
    result = insertion_deletion(score, images, torch.rand(6, 1, 16, 16), mode="insertion", steps=5)
    torch.testing.assert_close(result.curves[:, -1], torch.ones(6), atol=1e-5, rtol=0)  # the image itself


def test_class_metric_single_image_and_untouched_model(cnn, images):
    before = snapshot_state(cnn)
    metric = InsertionDeletion("gradcam", cnn, target_layer="block2", steps=6)
    metric.update(images[:1])
    metric.update(images[1:3], targets=torch.tensor([2, 2]))
    out = metric.compute()
    assert_same_state(before, snapshot_state(cnn))
    assert set(out) == {"insertion", "deletion", "x"}
    for mode in ("insertion", "deletion"):
        assert 0 <= out[mode]["auc"] <= 1 and len(out[mode]["curve"]) == 7
        assert all(math.isfinite(v) for v in out[mode]["curve"])


def test_errors(images):
    score = lambda x, rows: torch.zeros(x.shape[0])  # noqa: E731
    with pytest.raises(ValueError, match="empty"):
        insertion_deletion(score, images[:0], torch.rand(0, 1, 16, 16))
    with pytest.raises(ValueError, match="mode"):
        insertion_deletion(score, images, torch.rand(6, 1, 16, 16), mode="both")
    with pytest.raises(ValueError, match="score_fn must return"):
        insertion_deletion(lambda x, rows: torch.zeros(x.shape[0], 2), images, torch.rand(6, 1, 16, 16))
    with pytest.raises(ValueError, match="steps"):
        insertion_deletion(score, images, torch.rand(6, 1, 16, 16), steps=0)
