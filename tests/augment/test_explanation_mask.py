from __future__ import annotations

import pytest
import torch

from exaug import ExplanationMaskAugment, create_explainer
from exaug.augment import apply_mask, keep_mask
from exaug.explainers import normalize_saliency
from exaug.testing import assert_same_state, snapshot_state


def naive_routing(aug: ExplanationMaskAugment, x, v1, v2, y, model):
    """Reference: one sample at a time, the paper's Algorithm 1 written as a plain loop."""
    explainer = create_explainer(aug.explainer, model, **aug.explainer_options)
    first, extra, extra_labels = [], [], []
    model.eval()
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        target = y[i : i + 1] if aug.target == "label" else None
        sal = explainer(xi, target)
        sal, flat = normalize_saliency(sal)
        keep = keep_mask(sal, threshold=aug.threshold, keep_fraction=aug.keep_fraction, flat=flat)
        masked = apply_mask(xi, keep, aug.fill)
        with torch.no_grad():
            pred = model(masked).argmax(1).item()
        if pred == y[i].item():
            first.append(masked)
        else:
            first.append(v1[i : i + 1])
            if aug.mode == "exconb":
                extra.append(masked)
                extra_labels.append(y[i].item())
    extra_t = torch.cat(extra) if extra else x[:0]
    images = torch.cat([torch.cat(first), extra_t, v2, extra_t])
    labels = torch.cat([y, torch.tensor(extra_labels, dtype=torch.long)])
    background = torch.cat([torch.zeros(len(y), dtype=torch.bool), torch.ones(len(extra_labels), dtype=torch.bool)])
    return images, labels, background


@pytest.mark.parametrize("mode", ["excon", "exconb"])
@pytest.mark.parametrize("rule", [{"threshold": 0.5}, {"keep_fraction": 0.3}])
@pytest.mark.parametrize("target", ["label", "predicted"])
def test_matches_naive_per_sample_loop(mode, rule, target, batch, make_cnn):
    torch.manual_seed(0)
    model = make_cnn().double()
    x, v1, v2, y = (t.double() if t.is_floating_point() else t for t in batch)
    # Train a few steps so that some masks are right and some wrong.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    aug = ExplanationMaskAugment("gradcam", mode=mode, target=target, **rule)
    out = aug(x, (v1, v2), y, model)
    images, labels, background = naive_routing(aug, x, v1, v2, y, model)
    assert 0 < int(out.correct.sum()) < len(y), "test needs a mix of right and wrong masks"
    torch.testing.assert_close(out.images, images, rtol=0, atol=1e-12)
    assert torch.equal(out.labels, labels)
    assert torch.equal(out.background, background)
    assert out.images.shape[0] == 2 * out.num_rows


def test_background_rows_follow_regular_rows_in_sample_order(cnn, batch):
    x, v1, v2, y = batch
    out = ExplanationMaskAugment("gradcam", mode="exconb")(x, (v1, v2), y, cnn)
    b, n = len(y), out.num_rows
    wrong = (~out.correct).nonzero().squeeze(1)
    assert n == b + len(wrong)
    assert not out.background[:b].any() and out.background[b:].all()
    # identical in both views, equal to the masked originals of the wrong samples, in increasing sample order
    torch.testing.assert_close(out.images[b:n], out.masked[wrong])
    torch.testing.assert_close(out.images[n + b :], out.masked[wrong])
    assert torch.equal(out.labels[b:], y[wrong])
    # view 2 is always kept, view 1 replaced exactly where the mask was classified correctly
    torch.testing.assert_close(out.images[n : n + b], v2)
    expect_first = torch.where(out.correct.view(-1, 1, 1, 1), out.masked, v1)
    torch.testing.assert_close(out.images[:b], expect_first)


def test_all_masks_right_and_all_wrong(make_cnn):
    torch.manual_seed(0)
    model = make_cnn(forced_class=2)  # predicts class 2 whatever the input
    x = torch.randn(6, 3, 16, 16)
    v1, v2 = torch.randn_like(x), torch.randn_like(x)
    aug = ExplanationMaskAugment("gradcam", mode="exconb", target="predicted")
    right = aug(x, (v1, v2), torch.full((6,), 2), model)
    assert right.correct.all() and not right.background.any() and right.num_rows == 6
    wrong = aug(x, (v1, v2), torch.zeros(6, dtype=torch.long), model)
    assert not wrong.correct.any() and wrong.background.sum() == 6 and wrong.num_rows == 12
    torch.testing.assert_close(wrong.images[:6], v1)  # every backup view kept


def test_batch_of_one_and_single_class(cnn):
    x = torch.randn(1, 3, 16, 16)
    out = ExplanationMaskAugment("gradcam")(x, (x + 1, x - 1), torch.tensor([3]), cnn)
    assert out.images.shape[0] == 2 * out.num_rows and out.num_rows in (1, 2)
    x = torch.randn(5, 3, 16, 16)
    out = ExplanationMaskAugment("gradcam", mode="excon")(x, (x, x), torch.full((5,), 1), cnn)
    assert out.num_rows == 5 and torch.isfinite(out.images).all()


def test_flat_maps_keep_nothing_and_count_as_wrong(make_cnn):
    """A constant map must not keep the whole image (which would always be 'correct')."""
    torch.manual_seed(0)
    model = make_cnn(forced_class=0)
    x = torch.randn(4, 3, 16, 16)
    y = torch.zeros(4, dtype=torch.long)

    def constant(images, targets):
        return torch.ones(images.shape[0], 1, *images.shape[-2:])

    out = ExplanationMaskAugment(constant, fill=7.0)(x, (x, x), y, model)
    assert out.flat.all() and not out.keep.any()
    assert torch.all(out.masked == 7.0)
    assert torch.isfinite(out.saliency).all() and torch.all(out.saliency == 0)


def test_model_left_untouched(cnn, batch):
    x, v1, v2, y = batch
    cnn.train()
    cnn.features[1].eval()  # mixed flags, as with frozen BatchNorm
    cnn(x).sum().backward()  # pre-existing gradients
    before = snapshot_state(cnn)
    ExplanationMaskAugment("gradcam")(x, (v1, v2), y, cnn)
    assert_same_state(before, snapshot_state(cnn))


def test_explainer_forms_give_same_batch(cnn, batch):
    x, v1, v2, y = batch
    by_name = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "features.2"})(x, (v1, v2), y, cnn)
    explainer = create_explainer("gradcam", cnn, target_layer="features.2")
    by_instance = ExplanationMaskAugment(explainer)(x, (v1, v2), y, cnn)
    by_callable = ExplanationMaskAugment(lambda im, t: explainer(im, t) * 5 + 1)(x, (v1, v2), y, cnn)
    for other in (by_instance, by_callable):
        torch.testing.assert_close(other.images, by_name.images)
        assert torch.equal(other.background, by_name.background)


def test_explainer_is_built_once_per_model(cnn, batch, make_cnn):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam")
    first = aug.explainer_for(cnn)
    aug(x, (v1, v2), y, cnn)
    assert aug.explainer_for(cnn) is first
    other = make_cnn()
    assert aug.explainer_for(other) is not first


def test_disabled_returns_plain_views(cnn, batch):
    x, v1, v2, y = batch
    out = ExplanationMaskAugment(enabled=False)(x, (v1, v2), y, cnn)
    assert torch.equal(out.images, torch.cat([v1, v2])) and out.masked is None
    assert not out.background.any() and out.stats == {"rows": 12.0, "background": 0.0}


def test_as_views_matches_supcontrast_layout(cnn, batch):
    x, v1, v2, y = batch
    out = ExplanationMaskAugment("gradcam")(x, (v1, v2), y, cnn)
    n = out.num_rows
    z = torch.randn(2 * n, 4)
    f1, f2 = torch.split(z, [n, n], dim=0)
    assert torch.equal(out.as_views(z), torch.cat([f1.unsqueeze(1), f2.unsqueeze(1)], dim=1))
    with pytest.raises(ValueError, match="embeddings must have shape"):
        out.as_views(z[:-1])


def test_stats(cnn, batch):
    x, v1, v2, y = batch
    out = ExplanationMaskAugment("gradcam", keep_fraction=0.25)(x, (v1, v2), y, cnn)
    s = out.stats
    assert s["kept_area"] == pytest.approx(0.25, abs=1e-6)
    assert s["background"] == pytest.approx((1 - s["masked_correct"]) * 12)
    assert s["rows"] == 12 + s["background"]


@pytest.mark.parametrize("fill", ["zero", "mean", "blur", "noise", -1.5])
def test_fills_change_only_dropped_pixels(cnn, batch, fill):
    x, v1, v2, y = batch
    out = ExplanationMaskAugment("gradcam", fill=fill)(x, (v1, v2), y, cnn)
    keep = out.keep.expand_as(x)
    assert torch.equal(out.masked[keep], x[keep])
    assert torch.isfinite(out.masked).all()


def test_bad_inputs(cnn, batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam")
    with pytest.raises(ValueError, match="originals"):
        aug(x[0], (v1, v2), y, cnn)
    with pytest.raises(ValueError, match="view2"):
        aug(x, (v1, v2[:3]), y, cnn)
    with pytest.raises(ValueError, match="labels"):
        aug(x, (v1, v2), y[:3], cnn)
    with pytest.raises(TypeError, match="labels"):
        aug(x, (v1, v2), y.float(), cnn)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        aug(x, (v1, v2), y + 10, cnn)
    with pytest.raises(ValueError, match="mode"):
        ExplanationMaskAugment(mode="exconc")
    with pytest.raises(ValueError, match="fill"):
        ExplanationMaskAugment(fill="gray")
    with pytest.raises(ValueError, match="threshold"):
        ExplanationMaskAugment(threshold=1.5)
    with pytest.raises(ValueError, match="unknown explainer 'gradcamm'.*'gradcam'"):
        ExplanationMaskAugment("gradcamm")(x, (v1, v2), y, cnn)
    bad = ExplanationMaskAugment(lambda im, t: torch.ones(im.shape[0], 16, 16))
    with pytest.raises(ValueError, match=r"must return \(B, 1, H, W\)"):
        bad(x, (v1, v2), y, cnn)
