"""The public contrastive core: ``contrastive_loss`` against a per-anchor Python loop of the formula, and the
checks both SupCon losses share."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from exaug.losses import ExConBLoss, SupConLoss, exconb, functional, supcon
from exaug.losses.functional import (
    check_features,
    check_labels,
    check_temperatures,
    check_values,
    contrastive_loss,
    gather_contrast_set,
)


def naive_loss(features, contrast, positives, weights, offset, anchor_views, t, base_t):
    """The docstring formula, one anchor at a time, in float64."""
    n, v, _ = features.shape
    m = contrast.shape[0]
    total, count = 0.0, 0
    for view in range(anchor_views):
        for k in range(n):
            anchor = features[k, view].double()
            num, den, n_pos = 0.0, 0.0, 0.0
            for cv in range(v):
                for j in range(m):
                    if cv == view and j == offset + k:
                        continue  # the anchor's own entry
                    s = float(anchor @ contrast[j, cv].double()) / t
                    den += float(weights[cv, j]) * math.exp(s)
            if den == 0:
                continue
            for cv in range(v):
                for j in range(m):
                    if cv == view and j == offset + k:
                        continue
                    w = float(positives[k, j])
                    if w > 0:
                        s = float(anchor @ contrast[j, cv].double()) / t
                        num += w * (s - math.log(den))
                        n_pos += w
            if n_pos > 0:
                total += -(t / base_t) * num / n_pos
                count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("anchor_views", [1, 2, 3])
@pytest.mark.parametrize("offset", [0, 2])
def test_contrastive_loss_equals_the_formula(anchor_views, offset):
    g = torch.Generator().manual_seed(anchor_views * 10 + offset)
    n, v, m, d = 4, 3, 7, 5
    contrast = F.normalize(torch.randn(m, v, d, generator=g, dtype=torch.float64), dim=-1)
    features = contrast[offset : offset + n]
    positives = torch.rand(n, m, generator=g, dtype=torch.float64) * (torch.rand(n, m, generator=g) < 0.5)
    positives[0] = 0  # an anchor without positives is left out of the mean
    weights = 0.5 + torch.rand(v, m, generator=g, dtype=torch.float64)
    ours = contrastive_loss(features, contrast, positives, weights, offset, anchor_views, 0.3, 0.07)
    expected = naive_loss(features, contrast, positives, weights, offset, anchor_views, 0.3, 0.07)
    assert abs(float(ours) - expected) < 1e-10


def test_no_positive_anywhere_is_a_connected_zero():
    features = F.normalize(torch.randn(3, 2, 4), dim=-1).requires_grad_(True)
    loss = contrastive_loss(features, features, torch.zeros(3, 3, dtype=torch.bool), anchor_views=1)
    loss.backward()
    assert loss.item() == 0 and torch.equal(features.grad, torch.zeros_like(features))


def test_both_losses_use_the_public_core():
    for module in (supcon, exconb):
        assert module.contrastive_loss is functional.contrastive_loss
        assert module.check_features is check_features and module.gather_contrast_set is gather_contrast_set


def test_checks_name_the_argument():
    with pytest.raises(ValueError, match=r"`features` must have shape \(batch, n_views, dim\), got \(2, 3\)"):
        check_features(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="`features` must be a floating-point tensor"):
        check_features(torch.zeros(2, 1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`labels` must have shape \(batch,\) = \(2,\)"):
        check_labels(torch.zeros(3, dtype=torch.long), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        check_labels(torch.zeros(2) + 0.5, 2, torch.device("cpu"))  # whole-number floats are accepted (SupContrast)
    assert check_labels(torch.tensor([1, 2], dtype=torch.int32), 2, torch.device("cpu")).dtype == torch.int32
    for t, base_t in ((0.0, 0.07), (0.1, -1.0), (math.nan, 0.07)):
        with pytest.raises(ValueError, match="temperatures must be > 0"):
            check_temperatures(t, base_t)


def test_check_values_raises_on_non_finite_and_reports_normalisation():
    unit = F.normalize(torch.randn(2, 2, 4), dim=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_values(unit, warn="X") is False
        assert check_values(unit * 2) is True  # no caller name: reported, not warned
    with pytest.warns(UserWarning, match="X: `features` are not L2-normalised"):
        assert check_values(unit * 2, warn="X") is True
    with pytest.raises(ValueError, match="NaN or inf"):
        check_values(unit.masked_fill(unit > 0, math.inf))


@pytest.mark.parametrize("make_loss", [SupConLoss, ExConBLoss])
def test_losses_warn_once_per_object(make_loss):
    features = torch.randn(4, 2, 8)  # not normalised
    labels, background = torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.bool)
    loss = make_loss()
    args = (features, labels) if make_loss is SupConLoss else (features, labels, background)
    with pytest.warns(UserWarning, match=f"{make_loss.__name__}: `features` are not L2-normalised"):
        loss(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(*args)  # already warned
        make_loss(check_inputs=False)(*args)


def test_gather_contrast_set_without_a_process_group_is_the_identity():
    features, labels = torch.randn(3, 2, 4), torch.tensor([0, 1, 2])
    for enabled in (True, False):
        offset, contrast, all_labels, none = gather_contrast_set(enabled, features, labels, None)
        assert offset == 0 and contrast is features and all_labels is labels and none is None
