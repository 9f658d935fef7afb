"""ExConBLoss against a naive per-anchor loop written from the ExConB definition."""

import math

import pytest
import torch
import torch.nn.functional as F

from exaug.losses import ExConBLoss, SupConLoss


def naive_exconb(features, labels, background, temperature=0.07, base_temperature=0.07, bg_copies=None, bg_weight=1.0):
    """Anchors: every view of non-background rows. P(i): same label, non-background, not i.
    A(i): every other entry; a background row contributes its first ``bg_copies`` views, each with weight bg_weight."""
    n, v, _ = features.shape
    f, y, bg = features.tolist(), labels.tolist(), background.tolist()
    bg_copies = v if bg_copies is None else bg_copies
    entries = [(vv, j) for vv in range(v) for j in range(n) if not bg[j] or vv < bg_copies]
    losses = []
    for av in range(v):
        for i in range(n):
            if bg[i]:
                continue
            sim = {(vv, j): sum(a * b for a, b in zip(f[i][av], f[j][vv])) / temperature for vv, j in entries}
            others = [e for e in entries if e != (av, i)]
            denom = sum((bg_weight if bg[j] else 1.0) * math.exp(sim[(vv, j)]) for vv, j in others)
            positives = [(vv, j) for vv, j in others if not bg[j] and y[j] == y[i]]
            if not positives:
                continue
            s = sum(math.log(math.exp(sim[p]) / denom) for p in positives)
            losses.append(-(temperature / base_temperature) * s / len(positives))
    return sum(losses) / len(losses) if losses else 0.0


def make(n=7, v=2, d=5, seed=0, identical_bg=None):
    g = torch.Generator().manual_seed(seed)
    f = F.normalize(torch.randn(n, v, d, generator=g, dtype=torch.float64), dim=-1)
    if identical_bg is not None:  # the paper appends the same masked image in every view slot
        f[identical_bg] = f[identical_bg][:, :1].expand(-1, v, -1)
    return f


LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 2])
BG = torch.tensor([False, False, True, False, False, True, False])


def test_matches_naive():
    f = make(seed=1)
    loss = ExConBLoss(temperature=0.2, base_temperature=0.07)(f, LABELS, BG)
    assert loss.item() == pytest.approx(naive_exconb(f, LABELS, BG, 0.2, 0.07), abs=1e-6)


@pytest.mark.parametrize("n_views", [1, 2, 3])
def test_equals_supcon_without_background(n_views):
    f = make(v=n_views, seed=2)
    none = torch.zeros(7, dtype=torch.bool)
    a = ExConBLoss(temperature=0.1)(f, LABELS, none)
    b = SupConLoss(temperature=0.1)(f, labels=LABELS)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


@pytest.mark.parametrize("copies, n_copies", [("all", 2), ("one", 1)])
def test_background_copies_match_naive(copies, n_copies):
    f = make(seed=3)
    loss = ExConBLoss(background_copies=copies)(f, LABELS, BG)
    assert loss.item() == pytest.approx(naive_exconb(f, LABELS, BG, bg_copies=n_copies), abs=1e-6)
    # Two copies weigh more than one, so the loss differs (the views of a background row differ here).
    other = ExConBLoss(background_copies="one" if copies == "all" else "all")(f, LABELS, BG)
    assert abs(loss.item() - other.item()) > 1e-4


def test_half_weight_two_copies_equals_one_copy():
    # With identical background views, 0.5 * exp(s) + 0.5 * exp(s) = exp(s): every denominator is the same,
    # positives and anchors are unaffected, so the losses agree exactly.
    f = make(seed=4, identical_bg=BG)
    half = ExConBLoss(background_weight=0.5, background_copies="all")(f, LABELS, BG)
    one = ExConBLoss(background_copies="one")(f, LABELS, BG)
    assert half.item() == pytest.approx(one.item(), abs=1e-9)
    assert half.item() == pytest.approx(naive_exconb(f, LABELS, BG, bg_copies=2, bg_weight=0.5), abs=1e-6)


def test_weight_zero_removes_background():
    f = make(seed=5)
    keep = ~BG
    a = ExConBLoss(background_weight=0.0)(f, LABELS, BG)
    b = SupConLoss()(f[keep], labels=LABELS[keep])
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


@pytest.mark.parametrize(
    "n, background, labels",
    [
        (5, [True, True, False, True, True], [0, 1, 2, 3, 4]),  # all but one background
        (5, [False, True, False, False, True], [3, 3, 3, 3, 3]),  # a single class
        (1, [False], [0]),  # batch of 1
        (4, [True] * 4, [0, 1, 0, 1]),  # all background
    ],
)
@pytest.mark.parametrize("n_views", [1, 2])
def test_degenerate_batches_finite(n, background, labels, n_views):
    f = make(n=n, v=n_views, seed=6).requires_grad_()
    labels, background = torch.tensor(labels), torch.tensor(background)
    loss = ExConBLoss()(f, labels, background)
    assert torch.isfinite(loss) and loss.requires_grad
    assert loss.item() == pytest.approx(naive_exconb(f.detach(), labels, background), abs=1e-6)
    loss.backward()
    assert torch.isfinite(f.grad).all()
    if background.all():
        assert loss.item() == 0.0 and torch.equal(f.grad, torch.zeros_like(f))


def test_background_only_in_denominators():
    f = make(seed=7).requires_grad_()
    loss = ExConBLoss()(f, LABELS, BG)
    loss.backward()
    assert f.grad[BG].abs().sum() > 0  # background rows do receive gradient (through the denominators)
    # Their labels are irrelevant: they are never positives nor anchors.
    relabelled = LABELS.clone()
    relabelled[BG] = torch.tensor([1, 2])
    assert ExConBLoss()(f.detach(), relabelled, BG).item() == pytest.approx(loss.item(), abs=1e-12)
    # A harder negative costs more: with one non-background row (both views = e) and one background row b,
    # L = -log(e^(1/t) / (e^(1/t) + 2 e^(e.b/t))) grows with e.b; walk b from -e to e.
    e = make(n=1, v=1, seed=8)[0, 0]
    other = F.normalize(torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(9)), dim=0)
    losses = []
    for alpha in torch.linspace(-1, 1, 5, dtype=torch.float64):
        b = F.normalize(alpha * e + 0.3 * other, dim=0)
        pair = torch.stack([torch.stack([e, e]), torch.stack([b, b])])
        losses.append(ExConBLoss()(pair, torch.tensor([0, 0]), torch.tensor([False, True])).item())
    assert all(x < y for x, y in zip(losses, losses[1:]))
    # The gradient on a background row points away from the anchors (descent pushes it away).
    h = f.detach().clone()
    h[2] = F.normalize(h[2] - 1e-3 * f.grad[2], dim=-1)
    assert ExConBLoss()(h, LABELS, BG).item() < loss.item()


def test_bad_inputs():
    f = make()
    loss = ExConBLoss()
    with pytest.raises(ValueError, match=r"\(batch, n_views, dim\)"):
        loss(f.flatten(1), LABELS, BG)
    with pytest.raises(ValueError, match="labels"):
        loss(f, LABELS[:-1], BG)
    with pytest.raises(ValueError, match="integer"):  # whole-number floats are accepted, as in SupContrast
        loss(f, LABELS.double() + 0.5, BG)
    with pytest.raises(ValueError, match="background"):
        loss(f, LABELS, BG.long())
    with pytest.raises(ValueError, match="background"):
        loss(f, LABELS, BG[:-1])
    bad = f.clone()
    bad[1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        loss(bad, LABELS, BG)
    with pytest.raises(ValueError, match="background_copies"):
        ExConBLoss(background_copies="two")
    with pytest.raises(ValueError, match="background_weight"):
        ExConBLoss(background_weight=-1.0)
    with pytest.warns(UserWarning, match="L2-normalised"):
        loss(f * 2, LABELS, BG)


# -- no_positive semantics and API inputs (issues #11, #12) ------------------------------------------------------


def naive_exconb_zero(features, labels, background, temperature=0.07):
    """SupContrast's convention on ExConB: every non-background anchor counts; one without a positive is 0."""
    n, v, _ = features.shape
    singles = [i for i in range(n) if not background[i]]
    excluded = naive_exconb(features, labels, background, temperature)
    # Anchors with a positive: the "exclude" mean times their number, divided by every non-background anchor.
    y, bg = labels.tolist(), background.tolist()
    with_pos = sum(v for i in singles if v > 1 or any(y[j] == y[i] and not bg[j] for j in singles if j != i))
    return excluded * with_pos / (len(singles) * v)


@pytest.mark.parametrize("n_views", [1, 2])
def test_no_positive_zero_matches_supcontrast_convention(n_views):
    f = make(v=n_views, seed=21)
    labels = torch.tensor([0, 1, 0, 2, 3, 0, 2])  # label 3 is a singleton; with one view row 4 has no positive
    bg = torch.tensor([False, False, True, False, False, True, False])  # row 1 (label 1) has no partner either
    zero = ExConBLoss()(f, labels, bg)
    assert zero.item() == pytest.approx(naive_exconb_zero(f, labels, bg), abs=1e-9)
    exclude = ExConBLoss(no_positive="exclude")(f, labels, bg)
    assert exclude.item() == pytest.approx(naive_exconb(f, labels, bg), abs=1e-9)
    if n_views == 1:
        assert abs(zero.item() - exclude.item()) > 1e-3


@pytest.mark.parametrize("no_positive", ["zero", "exclude"])
def test_without_background_equals_supcon_for_both_conventions(no_positive):
    f = make(v=1, seed=22)
    labels = torch.tensor([0, 1, 0, 2, 3, 0, 2])
    none = torch.zeros(7, dtype=torch.bool)
    a = ExConBLoss(no_positive=no_positive)(f, labels, none)
    b = SupConLoss(no_positive=no_positive)(f, labels=labels)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_features_that_require_grad_and_empty_batches_backpropagate():
    f = make(seed=23).requires_grad_()
    ExConBLoss()(f, LABELS, BG).backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    empty = torch.zeros(0, 2, 5, requires_grad=True)
    loss = ExConBLoss()(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(empty.grad, torch.zeros_like(empty))


def test_all_background_is_a_connected_zero():
    f = make(seed=24).requires_grad_()
    loss = ExConBLoss()(f, LABELS, torch.ones(7, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


@pytest.mark.parametrize("kwargs, name", [
    ({"background_weight": math.inf}, "background_weight"), ({"background_weight": math.nan}, "background_weight"),
    ({"temperature": math.inf}, "temperature"), ({"temperature": 0.0}, "temperature"),
    ({"no_positive": "nan"}, "no_positive"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ExConBLoss(**kwargs)
