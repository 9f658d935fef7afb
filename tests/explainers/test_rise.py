"""RISE and RELAX against naive per-mask loops, plus their options and RNG hygiene."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exaug
from exaug.explainers import normalize_saliency
from exaug.explainers.rise import RELAXExplainer, RISEExplainer, plan_masks, render_masks, rise_masks

N_MASKS = 40


def naive_moments(score, images, masks, baseline):
    """Per image, per mask: score of baseline + M * (x - baseline); returns (B, n) scores."""
    rows = []
    for b in range(images.shape[0]):
        rows.append(torch.stack([score(baseline[b:b + 1] + m * (images[b:b + 1] - baseline[b:b + 1]), b)
                                 for m in masks]))
    return torch.stack(rows).double()  # (B, n)


@pytest.mark.parametrize("normalization", ["coverage", "p"])
@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_rise_matches_naive_loop(tiny_resnet64, images16, normalization, batch_size):
    images = images16.double()
    targets = torch.tensor([1, 5, 9])
    masks = rise_masks(N_MASKS, (16, 16), grid=4, p=0.5, seed=3).double()
    with torch.no_grad():
        scores = naive_moments(lambda x, b: tiny_resnet64(x).softmax(1)[0, targets[b]], images, masks,
                               torch.zeros_like(images))
    flat = masks.view(N_MASKS, -1)
    raw = scores @ flat
    raw = raw / (N_MASKS * 0.5) if normalization == "p" else raw / flat.sum(0)
    expected, _ = normalize_saliency(raw.view(3, 1, 16, 16).float())
    explainer = RISEExplainer(tiny_resnet64, n_masks=N_MASKS, grid=4, seed=3, batch_size=batch_size,
                              normalization=normalization)
    torch.testing.assert_close(explainer(images, targets), expected, atol=1e-5, rtol=0)


def test_relax_matches_naive_weighted_mean_and_variance(tiny_resnet64, images16):
    images = images16.double()
    masks = rise_masks(N_MASKS, (16, 16), grid=3, seed=1).double()
    baseline = exaug.explainers.captum_backends.make_baseline(images, "blur")
    with torch.no_grad():
        reference = tiny_resnet64(images)
        scores = naive_moments(lambda x, b: F.cosine_similarity(tiny_resnet64(x), reference[b:b + 1])[0],
                               images, masks, baseline)
    flat = masks.view(N_MASKS, -1)
    mean = (scores @ flat) / flat.sum(0)
    var = (scores.square() @ flat) / flat.sum(0) - mean.square()
    explainer = RELAXExplainer(tiny_resnet64, n_masks=N_MASKS, grid=3, seed=1, baseline="blur", batch_size=5)
    result = explainer.importance_and_uncertainty(images)
    torch.testing.assert_close(result.importance.double().view(3, -1), mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.uncertainty.double().view(3, -1), var.clamp_min(0), atol=1e-5, rtol=0)
    # Targets are validated but do not change the map.
    torch.testing.assert_close(explainer(images, [0, 1, 2]), explainer(images, [3, 3, 3]))


def test_masks_are_smooth_shifted_and_reproducible():
    masks = rise_masks(500, (32, 24), grid=4, p=0.3, seed=0)
    assert masks.shape == (500, 1, 32, 24) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - 0.3) < 0.05
    assert torch.equal(masks, rise_masks(500, (32, 24), grid=4, p=0.3, seed=0))
    assert not torch.equal(masks, rise_masks(500, (32, 24), grid=4, p=0.3, seed=1))
    plan = plan_masks(500, (32, 24), grid=4, p=0.3, seed=0)
    torch.testing.assert_close(render_masks(plan, 100, 150), masks[100:150])
    assert (plan.shifts[:, 0] < 8).all() and (plan.shifts[:, 1] < 6).all()  # cell = ceil(side / grid)


def test_global_rng_untouched_and_maps_deterministic(tiny_resnet, images16):
    explainer = exaug.create_explainer("rise", tiny_resnet, n_masks=64)
    state = torch.get_rng_state()
    first = explainer(images16, 0)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(first, explainer(images16, 0))
    assert not torch.equal(first, exaug.create_explainer("rise", tiny_resnet, n_masks=64, seed=1)(images16, 0))


class QuadrantModel(nn.Module):
    """Output ``(5 * mean of the top-left quadrant of channel 0, 1)``: as logits, class 0 grows with that
    quadrant; as a representation, its direction (RELAX's cosine) depends on that quadrant only."""

    def forward(self, x):
        evidence = 5 * x[:, 0, :8, :8].mean(dim=(1, 2))
        return torch.stack([evidence, torch.ones_like(evidence)], dim=1)


@pytest.mark.parametrize("name", ["rise", "relax"])
def test_evidence_region_is_salient(name):
    images = torch.ones(2, 3, 16, 16)
    sal = exaug.create_explainer(name, QuadrantModel(), n_masks=300, grid=4)(images, 0)
    inside, outside = sal[:, 0, :6, :6].mean(), sal[:, 0, 10:, 10:].mean()
    assert inside > outside + 0.3


def test_auto_score_uses_raw_outputs_for_single_columns_and_targets():
    class Scalar(nn.Module):
        def forward(self, x):
            return x[:, :1, :4, :4].mean(dim=(2, 3)) - 3.0  # (B, 1): a softmax would be constant 1

    explainer = RISEExplainer(Scalar(), n_masks=50, grid=4)
    assert explainer.resolved_score(1) == "raw"
    exp = explainer.explain(torch.rand(2, 3, 16, 16) + 1, 0)
    assert not exp.flat.any()
    assert RISEExplainer(nn.Identity(), n_masks=1).resolved_score(10) == "softmax"
    assert RISEExplainer(nn.Identity(), n_masks=1, score="raw").resolved_score(10) == "raw"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_masks": 0}, "n_masks"),
        ({"grid": 1.5}, "grid"),
        ({"p": 1.0}, "p must"),
        ({"batch_size": -1}, "batch_size"),
        ({"baseline": "mean"}, "baseline"),
        ({"score": "logit"}, "score"),
        ({"normalization": "n"}, "normalization"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_bad_options_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        exaug.create_explainer("rise", nn.Identity(), **options)


def test_repr_lists_options(tiny_resnet):
    text = repr(exaug.create_explainer("relax", tiny_resnet, n_masks=10))
    assert "n_masks=10" in text and "grid=7" in text
