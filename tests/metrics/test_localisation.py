"""Localisation metrics (Arras et al. 2022) against Quantus on the same inputs, and analytic cases where exaug's
definition is deliberately different (ties of the pointing game, a map with no positive mass)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from exaug.explainers import create_explainer
from exaug.metrics import (
    Localisation,
    boxes_to_mask,
    content_heatmap,
    localisation_scores,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from exaug.testing import assert_same_state, snapshot_state


def _inputs(signed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous random maps (no ties) and random masks, one of them empty."""
    g = torch.Generator().manual_seed(3)
    saliency = torch.rand(7, 1, 12, 12, generator=g, dtype=torch.float64)
    if signed:
        saliency = saliency * 2 - 0.6
    mask = torch.rand(7, 1, 12, 12, generator=g) > 0.7
    mask[3] = False
    return saliency, mask


def _quantus(metric, saliency: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Quantus' batch rule on the same arrays (no normalisation, no abs: the raw definitions)."""
    return np.asarray(metric.evaluate_batch(a_batch=saliency.numpy(), s_batch=mask.numpy()), dtype=np.float64)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.filterwarnings("ignore")
def test_matches_quantus_on_the_same_inputs(signed):
    quantus = pytest.importorskip("quantus")
    saliency, mask = _inputs(signed)
    pairs = {
        "pointing_game": (pointing_game, quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)),
        "relevance_rank": (relevance_rank_accuracy,
                           quantus.RelevanceRankAccuracy(abs=False, normalise=False, disable_warnings=True)),
    }
    if not signed:  # Quantus sums the signed map; Arras et al. (and exaug) count the positive relevance only
        pairs["relevance_mass"] = (relevance_mass_accuracy,
                                   quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True))
    known = mask.flatten(1).any(dim=1).numpy()
    for name, (ours, theirs) in pairs.items():
        expected = _quantus(theirs, saliency, mask)
        got = ours(saliency, mask).numpy()
        # An empty mask is NaN for exaug. Quantus 0.6 means NaN too, but its pointing game writes NaN into a
        # bool array, which turns it into a hit (1.0): only the images with an object are compared.
        assert np.isnan(got[~known]).all(), name
        np.testing.assert_allclose(got[known], expected[known], rtol=1e-6, err_msg=name)  # mass: float32 like content_heatmap


@pytest.mark.filterwarnings("ignore")
def test_signed_mass_counts_positive_relevance_only():
    quantus = pytest.importorskip("quantus")
    saliency, mask = _inputs(signed=True)
    expected = _quantus(quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True),
                        saliency.clamp_min(0), mask)
    np.testing.assert_allclose(relevance_mass_accuracy(saliency, mask).numpy(), expected, rtol=1e-6,
                               equal_nan=True)


def test_relevance_mass_is_the_content_heatmap_of_the_positive_part():
    saliency, mask = _inputs(signed=True)
    known = mask.flatten(1).any(dim=1)
    torch.testing.assert_close(relevance_mass_accuracy(saliency, mask)[known],
                               content_heatmap(saliency.clamp_min(0), mask)[known].double())


def test_rank_accuracy_naive_loop_with_variable_object_sizes():
    saliency, mask = _inputs()
    expected = []
    for s, m in zip(saliency.flatten(1), mask.flatten(1)):
        k = int(m.sum())
        if k == 0:
            expected.append(math.nan)
            continue
        top = sorted(range(s.numel()), key=lambda i: -float(s[i]))[:k]
        expected.append(sum(bool(m[i]) for i in top) / k)
    np.testing.assert_allclose(relevance_rank_accuracy(saliency, mask).numpy(), expected, equal_nan=True)


def test_analytic_cases_ties_and_flat_maps():
    mask = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True  # the top half: 8 of 16 pixels
    saliency = torch.zeros(3, 1, 4, 4)
    saliency[0, 0, 0, 1] = 1.0  # one peak inside
    saliency[1, 0, 0, 0] = saliency[1, 0, 3, 3] = 1.0  # two tied peaks, one inside
    scores = localisation_scores(saliency, mask)  # image 2 is flat
    assert scores["pointing_game"].tolist() == [1.0, 0.5, 0.5]  # a flat map scores the area fraction (chance)
    assert scores["relevance_mass"].tolist() == [1.0, 0.5, 0.5]
    # Ties rank by pixel index: the flat map's top-8 pixels are the first 8 (the top half); image 1's are its
    # two peaks then the first 6 zeros, so the peak at (3, 3) is the one miss.
    assert scores["relevance_rank"].tolist() == [1.0, 0.875, 1.0]
    mirrored = localisation_scores(saliency.flip(-2), mask.flip(-2))
    assert mirrored["relevance_rank"][2] == 0.0  # ... and the flat map's first 8 pixels miss the bottom half


def test_boxes_equal_their_masks():
    saliency, _ = _inputs()
    boxes = torch.tensor([[1.0, 2.0, 7.0, 9.0]] * 7)
    mask = boxes_to_mask(boxes, 12, 12)
    for key, value in localisation_scores(saliency, boxes=boxes).items():
        torch.testing.assert_close(value, localisation_scores(saliency, mask)[key], msg=key)


def test_streaming_mean_leaves_out_empty_masks_and_equals_the_functions():
    saliency, mask = _inputs()
    metric = Localisation()
    metric.update(saliency[:4], mask[:4])
    metric.update(saliency[4:], mask[4:])
    result = metric.compute()
    assert result["images"] == 6 and result["images_without_mask"] == 1
    for key, values in localisation_scores(saliency, mask).items():
        assert result[key] == pytest.approx(float(np.nanmean(values.numpy())))


def test_with_an_explainer_equals_explaining_first(cnn, images):
    before = snapshot_state(cnn)
    mask = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5
    by_name = Localisation("gradcam", cnn, target_layer="block2")
    by_name.update(images, mask, targets=torch.arange(6) % 5)
    explainer = create_explainer("gradcam", cnn, target_layer="block2")
    direct = Localisation()
    direct.update(explainer.explain(images, torch.arange(6) % 5).saliency, mask)
    assert by_name.compute() == pytest.approx(direct.compute())
    assert_same_state(before, snapshot_state(cnn))


def test_clear_errors():
    saliency, mask = _inputs()
    with pytest.raises(ValueError, match="exactly one of mask"):
        pointing_game(saliency)
    with pytest.raises(ValueError, match="saliency must have shape"):
        pointing_game(saliency[:, 0], mask)
    with pytest.raises(TypeError, match="mask must be bool"):
        pointing_game(saliency, mask.float())
    with pytest.raises(TypeError, match="model must be"):
        Localisation("gradcam")
    with pytest.raises(ValueError, match="targets are only used"):
        Localisation().update(saliency, mask, targets=0)
    metric = Localisation()
    metric.update(saliency[3:4], mask[3:4])  # only an empty mask: nothing to average
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
