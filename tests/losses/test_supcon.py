"""SupConLoss against a naive per-anchor loop written straight from the SupCon paper's formula."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from exaug.losses import SupConLoss


def naive_supcon(features, pos, temperature=0.07, base_temperature=0.07, anchor_views=None, no_positive="zero"):
    """Per-anchor loop: L_i = -1/|P(i)| sum_p log(exp(s_ip) / sum_{a != i} exp(s_ia)).

    ``no_positive="exclude"``: mean over anchors with P(i) (pytorch-metric-learning). ``"zero"``: SupContrast's
    current ``losses.py`` (NOTES §3/§10): ``mask_pos_pairs`` of 0 is replaced by 1, so an anchor without a positive
    is a 0 term, and ``loss.view(anchor_count, batch_size).mean()`` divides by every anchor.
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
                if no_positive == "zero":
                    losses.append(0.0)  # SupContrast: a zero term, counted in the mean
                continue  # "exclude": contributes nothing, not counted in the mean
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
    loss = SupConLoss(no_positive="exclude")(f, labels=labels)
    assert loss.item() == pytest.approx(naive_supcon(f.detach(), same_label(labels), no_positive="exclude"), abs=1e-6)
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
    with pytest.raises(ValueError, match="integer"):  # whole-number floats are accepted, as in SupContrast
        loss(f, labels=LABELS.float() + 0.5)
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


# -- SupContrast drop-in: anchors without a positive, label forms (issue #12) ------------------------------------


@pytest.mark.parametrize("n_views, contrast_mode", [(1, "all"), (2, "one"), (3, "all")])
def test_default_counts_anchors_without_positive_as_zero_terms_like_supcontrast(n_views, contrast_mode):
    f = make(v=n_views, seed=11).requires_grad_()
    labels = torch.tensor([0, 0, 1, 2, 3, 1])  # 2 and 3 are singletons
    anchor_views = 1 if contrast_mode == "one" else None
    loss = SupConLoss(contrast_mode=contrast_mode)(f, labels=labels)
    expected = naive_supcon(f.detach(), same_label(labels), anchor_views=anchor_views, no_positive="zero")
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_zero_and_exclude_differ_by_the_share_of_anchors_with_a_positive():
    # One view, labels [0, 0, 1, 2]: 2 of 4 anchors have a positive, so SupContrast's mean is half of the other.
    f = make(n=4, v=1, seed=12)
    labels = torch.tensor([0, 0, 1, 2])
    zero = SupConLoss()(f, labels=labels)
    exclude = SupConLoss(no_positive="exclude")(f, labels=labels)
    assert zero.item() == pytest.approx(exclude.item() / 2, abs=1e-12) and exclude.item() > 0


@pytest.mark.parametrize("no_positive", ["zero", "exclude"])
def test_custom_mask_with_empty_rows_matches_naive(no_positive):
    f = make(seed=13)
    mask = torch.zeros(6, 6)
    mask[0, 3] = mask[3, 0] = mask[1, 4] = 1.0  # anchors of 2 and 5 only have their own other view
    mask[2, 2] = 0.0
    loss = SupConLoss(no_positive=no_positive)(f, mask=mask)
    assert loss.item() == pytest.approx(naive_supcon(f, mask.tolist(), no_positive=no_positive), abs=1e-9)


def test_float_and_column_labels_are_accepted_like_supcontrast():
    f = make(seed=14)
    reference = SupConLoss()(f, labels=LABELS)
    for labels in (LABELS.double(), LABELS.float().view(-1, 1), LABELS.view(-1, 1), LABELS.to(torch.int32)):
        assert torch.equal(SupConLoss()(f, labels=labels), reference)


@pytest.mark.parametrize("bad", [torch.tensor([0.0, 1.5, 0, 2, 1, 0]), torch.tensor([0.0, math.nan, 0, 2, 1, 0])])
def test_float_labels_must_be_whole_numbers(bad):
    with pytest.raises(ValueError, match="`labels` .* whole numbers"):
        SupConLoss()(make(), labels=bad)


def test_bool_labels_and_wrong_label_shapes_are_rejected():
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        SupConLoss()(make(), labels=LABELS.bool())
    with pytest.raises(ValueError, match=r"`labels` must have shape \(batch,\)"):
        SupConLoss()(make(), labels=LABELS.view(2, 3))


@pytest.mark.parametrize("mode", ["zero", "exclude"])
def test_empty_batch_is_a_zero_that_backpropagates(mode):
    f = torch.zeros(0, 2, 5, requires_grad=True)
    for loss in (SupConLoss(no_positive=mode)(f, labels=torch.zeros(0, dtype=torch.long)), SupConLoss()(f)):
        assert loss.item() == 0.0 and not torch.isnan(loss)
        loss.backward()
    assert f.grad is not None and f.grad.shape == f.shape


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_bad_mask_values_are_clear_errors(value):
    mask = torch.eye(6)
    mask[0, 1] = value
    with pytest.raises(ValueError, match="`mask` must hold finite weights >= 0"):
        SupConLoss()(make(), mask=mask)
    with pytest.raises(ValueError, match="`mask` must hold finite weights >= 0"):
        SupConLoss()(make(), mask=torch.full((6, 6), -1))


@pytest.mark.parametrize("kwargs, name", [
    ({"temperature": math.inf}, "temperature"), ({"temperature": -0.1}, "temperature"),
    ({"temperature": 0.0}, "temperature"), ({"base_temperature": math.inf}, "base_temperature"),
    ({"base_temperature": math.nan}, "base_temperature"), ({"no_positive": "drop"}, "no_positive"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SupConLoss(**kwargs)
