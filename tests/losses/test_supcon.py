"""SupConLoss against a naive per-anchor loop written straight from the SupCon paper's formula."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from exaug.losses import SupConLoss


def naive_supcon(features, pos, temperature=0.07, base_temperature=0.07, anchor_views=None):
    """Per-anchor loop: L_i = -1/|P(i)| sum_p log(exp(s_ip) / sum_{a != i} exp(s_ia)), mean over anchors with P(i).

    ``pos[i][j]`` is the weight of sample j as a positive of sample i (bool or float, as SupContrast's mask).
    """
    n, v, _ = features.shape
    f = features.tolist()
    anchor_views = v if anchor_views is None else anchor_views
    entries = [(vv, j) for vv in range(v) for j in range(n)]
    losses = []
    for av in range(anchor_views):
        for i in range(n):
            sim = {(vv, j): sum(a * b for a, b in zip(f[i][av], f[j][vv])) / temperature for vv, j in entries}
            others = [e for e in entries if e != (av, i)]
            denom = sum(math.exp(sim[e]) for e in others)
            total_w = sum(float(pos[i][j]) for _, j in others)
            if total_w == 0:
                continue  # no positive: contributes nothing, not counted in the mean
            s = sum(float(pos[i][j]) * math.log(math.exp(sim[(vv, j)]) / denom) for vv, j in others)
            losses.append(-(temperature / base_temperature) * s / total_w)
    return sum(losses) / len(losses) if losses else 0.0


def make(n=6, v=2, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, v, d, generator=g, dtype=torch.float64), dim=-1)


def same_label(labels):
    return (labels[:, None] == labels[None, :]).tolist()


LABELS = torch.tensor([0, 1, 0, 2, 1, 0])


@pytest.mark.parametrize("n_views", [1, 2, 3])
def test_labels_mode_matches_naive(n_views):
    f = make(v=n_views)
    loss = SupConLoss(temperature=0.1, base_temperature=0.1)(f, labels=LABELS)
    assert loss.item() == pytest.approx(naive_supcon(f, same_label(LABELS), 0.1, 0.1), abs=1e-6)


@pytest.mark.parametrize("n_views", [2, 3])
def test_simclr_mode_matches_naive(n_views):
    f = make(v=n_views, seed=1)
    eye = torch.eye(6, dtype=torch.bool).tolist()
    assert SupConLoss()(f).item() == pytest.approx(naive_supcon(f, eye), abs=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_custom_mask_matches_naive(weighted):
    f = make(seed=2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(6, 6, generator=g, dtype=torch.float64) if weighted else torch.rand(6, 6, generator=g) > 0.6
    assert SupConLoss()(f, mask=mask).item() == pytest.approx(naive_supcon(f, mask.tolist()), abs=1e-6)


def test_contrast_mode_one_matches_naive():
    f = make(v=3, seed=4)
    loss = SupConLoss(contrast_mode="one")(f, labels=LABELS)
    assert loss.item() == pytest.approx(naive_supcon(f, same_label(LABELS), anchor_views=1), abs=1e-6)


def test_temperature_scaling():
    f = make(seed=5)
    loss = SupConLoss(temperature=0.5, base_temperature=0.07)(f, labels=LABELS)
    assert loss.item() == pytest.approx(naive_supcon(f, same_label(LABELS), 0.5, 0.07), abs=1e-6)


def test_anchor_without_positive_is_excluded_and_finite():
    # One view: samples 3 and 4 have unique labels, so their anchors have no positive at all.
    f = make(v=1, seed=6).requires_grad_()
    labels = torch.tensor([0, 0, 1, 2, 3, 1])
    loss = SupConLoss()(f, labels=labels)
    assert loss.item() == pytest.approx(naive_supcon(f.detach(), same_label(labels)), abs=1e-6)
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_no_positive_at_all_gives_zero_with_grad():
    f = make(v=1, seed=7).requires_grad_()
    loss = SupConLoss()(f)  # SimCLR with a single view: nobody has a positive
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_gradients_finite_and_match_float32():
    f = make(n=8, v=2, seed=8).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    SupConLoss(temperature=0.05)(f, labels=labels).backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    # Large logits (1/t = 20) stay stable in float32 thanks to logsumexp.
    f32 = f.detach().float()
    assert SupConLoss(temperature=0.05)(f32, labels=labels).item() == pytest.approx(
        SupConLoss(temperature=0.05)(f.detach(), labels=labels).item(), abs=1e-4
    )


def test_bad_inputs():
    f = make()
    loss = SupConLoss()
    with pytest.raises(ValueError, match=r"\(batch, n_views, dim\)"):
        loss(f[:, 0])
    with pytest.raises(ValueError, match="labels"):
        loss(f, labels=LABELS[:4])
    with pytest.raises(ValueError, match="integer"):
        loss(f, labels=LABELS.float())
    with pytest.raises(ValueError, match="not both"):
        loss(f, labels=LABELS, mask=torch.eye(6))
    with pytest.raises(ValueError, match="mask"):
        loss(f, mask=torch.eye(5))
    bad = f.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, labels=LABELS)
    with pytest.raises(ValueError, match="contrast_mode"):
        SupConLoss(contrast_mode="both")
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)


def test_unnormalised_warns_once_and_can_be_disabled():
    f = make() * 3
    loss = SupConLoss()
    with pytest.warns(UserWarning, match="L2-normalised"):
        loss(f, labels=LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(f, labels=LABELS)  # already warned by this module
        SupConLoss(check_inputs=False)(f, labels=LABELS)
        SupConLoss()(make(), labels=LABELS)  # normalised: silent
