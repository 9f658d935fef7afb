from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exaug.augment import EDDAAugment, EDDAParams
from exaug.testing import assert_same_state, snapshot_state


def rank_saliency(images: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Deterministic map with all-distinct values (ranks of the channel sum), so top-k / bottom-k have no ties
    and a naive loop can reproduce the selection exactly."""
    b, _, h, w = images.shape
    ranks = images.sum(1).flatten(1).argsort(1).argsort(1).float()
    return (ranks / (h * w - 1)).view(b, 1, h, w)


def naive_edda(aug: EDDAAugment, x, y, model, num_classes):
    """Reference: one image at a time, occluded pixels picked from a full sort."""
    model.eval()
    images, targets, salient = [], [], []
    k = round(aug.salient_fraction * x.shape[-1] * x.shape[-2])
    for part in ("salient", "nonsalient"):
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            order = rank_saliency(xi, None).flatten().argsort(descending=part == "salient")
            occluded_mask = torch.zeros(x.shape[-1] * x.shape[-2], dtype=torch.bool)
            occluded_mask[order[:k]] = True
            fill = torch.zeros_like(xi) if aug.fill == "zero" else xi.mean(dim=(2, 3), keepdim=True).expand_as(xi)
            occluded = torch.where(occluded_mask.view(1, 1, *x.shape[-2:]), fill, xi)
            one_hot = F.one_hot(y[i], num_classes).float()
            if part == "nonsalient":
                target = one_hot
            elif aug.target == "exclude":
                continue
            elif aug.target == "uniform":
                target = torch.full((num_classes,), 1.0 / num_classes)
            elif aug.target == "soft":
                target = aug.confidence * one_hot + (1 - aug.confidence) / num_classes
            else:
                with torch.no_grad():
                    p = model(xi).softmax(1)[0]
                p[y[i]] *= aug.confidence_scale
                target = p / p.sum()
            images.append(occluded)
            targets.append(target)
            salient.append(part == "salient")
    return torch.cat(images), torch.stack(targets), torch.tensor(salient)


@pytest.mark.parametrize("target", ["soft", "uniform", "lower_confidence", "exclude"])
@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_matches_naive_loop(target, fill, cnn, batch):
    x, _, _, y = batch
    aug = EDDAAugment(rank_saliency, salient_fraction=0.25, target=target, fill=fill, confidence=0.6,
                      confidence_scale=0.3)
    out = aug(x, y, cnn)
    images, targets, salient = naive_edda(aug, x, y, cnn, num_classes=5)
    assert torch.allclose(out.images, images, atol=1e-6)
    assert torch.allclose(out.targets, targets, atol=1e-5)
    assert torch.equal(out.salient, salient) and torch.equal(out.nonsalient, ~salient)
    assert torch.equal(out.labels, y[out.source])
    assert out.num_rows == (12 if target == "exclude" else 24)


def test_targets_are_probability_rows(cnn, batch):
    x, _, _, y = batch
    for target in ("soft", "uniform", "lower_confidence"):
        out = EDDAAugment("gradcam", target=target)(x, y, cnn)
        assert out.targets.shape == (24, 5) and (out.targets >= 0).all()
        assert torch.allclose(out.targets.sum(1), torch.ones(24), atol=1e-6)
        # Non-salient copies keep their label; salient copies are less confident in it.
        assert torch.equal(out.targets[out.nonsalient], F.one_hot(y, 5).float())
        label_prob = out.targets[out.salient].gather(1, y[:, None])
        assert (label_prob < 1).all()


def test_occludes_exactly_k_disjoint_pixels(cnn, batch):
    x, _, _, y = batch  # randn images: no pixel is exactly 0 before occlusion
    for policy in ("explanation", "random"):
        out = EDDAAugment("gradcam", salient_fraction=0.2, policy=policy, seed=0)(x, y, cnn)
        occluded = (out.images == 0).all(dim=1)  # (M, H, W)
        k = round(0.2 * 16 * 16)
        assert (occluded.flatten(1).sum(1) == k).all()
        salient, nonsalient = occluded[out.salient], occluded[out.nonsalient]
        assert not (salient & nonsalient).any()  # the two copies of an image occlude different pixels


def test_explanation_policy_follows_saliency_and_random_does_not(cnn, batch):
    x, _, _, y = batch
    explained = EDDAAugment("gradcam", salient_fraction=0.2)(x, y, cnn)
    occluded = (explained.images[explained.salient] == 0).all(dim=1, keepdim=True)
    sal = explained.saliency
    # Occluded pixels of salient copies are the most salient ones: every occluded value >= every kept value.
    lo = torch.where(occluded, sal, torch.full_like(sal, 2.0)).flatten(1).amin(1)
    hi = torch.where(occluded, torch.full_like(sal, -1.0), sal).flatten(1).amax(1)
    assert (lo >= hi).all()
    control = EDDAAugment("gradcam", salient_fraction=0.2, policy="random", seed=0)(x, y, cnn)
    assert not torch.equal(control.images, explained.images)
    again = EDDAAugment("gradcam", salient_fraction=0.2, policy="random", seed=0)(x, y, cnn)
    assert torch.equal(control.saliency, again.saliency)  # seeded random maps are reproducible


def test_model_is_left_untouched(cnn, batch):
    x, _, _, y = batch
    cnn.train()
    cnn(x).sum().backward()  # accumulated gradients must survive
    before = snapshot_state(cnn)
    for policy in ("explanation", "random"):
        for target in ("soft", "lower_confidence"):
            EDDAAugment("gradcam", policy=policy, target=target)(x, y, cnn)
    assert_same_state(before, snapshot_state(cnn))


def test_batch_of_one(cnn, batch):
    x, _, _, y = batch
    out = EDDAAugment("gradcam")(x[:1], y[:1], cnn)
    assert out.images.shape == (2, 3, 16, 16) and out.targets.shape == (2, 5)
    assert out.salient.tolist() == [True, False] and out.source.tolist() == [0, 0]


def test_flat_maps_produce_no_rows(cnn, batch):
    x, _, _, y = batch

    def half_flat(images, targets):
        maps = rank_saliency(images, targets)
        maps[::2] = 0.3  # constant maps carry no information: no occlusion can be justified
        return maps

    out = EDDAAugment(half_flat)(x, y, cnn)
    assert out.flat.tolist() == [i % 2 == 0 for i in range(12)]
    assert out.num_rows == 12 and (out.source % 2 == 1).all()

    empty = EDDAAugment(lambda images, targets: torch.ones(images.shape[0], 1, 16, 16))(x, y, cnn)
    assert empty.images.shape == (0, 3, 16, 16) and empty.targets.shape == (0, 5)
    assert empty.salient.shape == (0,) and empty.flat.all()


def test_lower_confidence_with_certain_model_falls_back_to_uniform(make_cnn, batch):
    x, _, _, y = batch
    model = make_cnn(forced_class=2)  # probability 1 for class 2
    out = EDDAAugment("gradcam", target="lower_confidence", confidence_scale=0.0)(x, torch.full_like(y, 2), model)
    assert torch.isfinite(out.targets).all()
    assert torch.allclose(out.targets[out.salient], torch.full((12, 5), 0.2))


def test_argument_errors(cnn, batch):
    x, _, _, y = batch
    with pytest.raises(ValueError, match="salient_fraction"):
        EDDAAugment(salient_fraction=0.7)
    with pytest.raises(ValueError, match="target"):
        EDDAAugment(target="hard")
    with pytest.raises(ValueError, match="policy"):
        EDDAAugment(policy="saliency")
    with pytest.raises(ValueError, match="confidence"):
        EDDAAugment(confidence=1.5)
    with pytest.raises(ValueError, match="fill"):
        EDDAAugment(fill="purple")
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 4\]"):
        EDDAAugment("gradcam")(x, y + 5, cnn)
    with pytest.raises(TypeError, match="labels"):
        EDDAAugment("gradcam")(x, y.float(), cnn)
    with pytest.raises(ValueError, match="images"):
        EDDAAugment("gradcam")(x[0], y, cnn)


# -- draw / apply ---------------------------------------------------------------------------------------------
def test_draw_then_apply_equals_forward_and_replays(cnn, batch):
    x, _, _, y = batch
    for policy in ("explanation", "random"):
        for fill in ("zero", "noise"):
            # A new augment per call: the seeded random maps continue their private stream across calls.
            torch.manual_seed(11)
            direct = EDDAAugment("gradcam", policy=policy, fill=fill, seed=0)(x, y, cnn)
            aug = EDDAAugment("gradcam", policy=policy, fill=fill, seed=0)
            torch.manual_seed(11)
            params = aug.draw(x, y, cnn)
            replayed = aug.apply(x, y, params)
            for field in ("images", "targets", "salient", "source", "labels", "saliency", "flat", "logits"):
                assert torch.equal(getattr(replayed, field), getattr(direct, field)), (policy, fill, field)
            # apply is deterministic: a second replay (no model, no explainer) gives the same rows.
            assert torch.equal(aug(x, y, params=params).images, replayed.images)
            assert (params.fill is not None) == (fill == "noise")


def test_apply_occludes_hand_made_params_like_a_naive_loop(batch):
    """Regions, targets and flat rows chosen by hand; a per-image loop builds the expected rows."""
    x, _, _, y = batch
    b, _, h, w = x.shape
    g = torch.Generator().manual_seed(8)
    salient_keep = torch.rand(b, 1, h, w, generator=g) > 0.3
    nonsalient_keep = torch.rand(b, 1, h, w, generator=g) > 0.3
    salient_targets = torch.rand(b, 5, generator=g).softmax(1)
    flat = torch.tensor([i in (2, 7) for i in range(b)])
    params = EDDAParams(salient_keep, nonsalient_keep, salient_targets, F.one_hot(y, 5).float(),
                        saliency=torch.rand(b, 1, h, w, generator=g), flat=flat, logits=torch.randn(b, 5, generator=g))
    for target in ("soft", "exclude"):
        aug = EDDAAugment(lambda im, t: pytest.fail("apply must not explain"), target=target, fill=-2.0)
        out = aug.apply(x, y, params)
        images, targets, sources = [], [], []
        for part, keep, tgt in (("salient", salient_keep, salient_targets),
                                ("nonsalient", nonsalient_keep, F.one_hot(y, 5).float())):
            if part == "salient" and target == "exclude":
                continue
            for i in range(b):
                if flat[i]:
                    continue
                images.append(torch.where(keep[i], x[i], torch.full_like(x[i], -2.0)))
                targets.append(tgt[i])
                sources.append(i)
        assert torch.equal(out.images, torch.stack(images))
        assert torch.equal(out.targets, torch.stack(targets))
        assert out.source.tolist() == sources and torch.equal(out.labels, y[out.source])
        assert out.saliency is params.saliency and out.logits is params.logits


def test_generator_drives_tie_break_and_noise(cnn, batch):
    x, _, _, y = batch

    def zeros_and_ones(images, targets):  # large ties: the tie-break decides the occlusion
        maps = torch.zeros(images.shape[0], 1, *images.shape[-2:])
        maps[..., :4, :] = 1.0
        return maps

    aug = EDDAAugment(zeros_and_ones, salient_fraction=0.3, fill="noise")
    a = aug(x, y, cnn, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(99)  # the global RNG must not matter
    b = aug(x, y, cnn, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.images, b.images)
    c = aug.draw(x, y, cnn, generator=torch.Generator().manual_seed(2))
    d = aug.draw(x, y, cnn, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(c.salient_keep, d.salient_keep) and not torch.equal(c.fill, d.fill)


def test_is_a_module_without_the_model(cnn, batch):
    x, _, _, y = batch
    aug = EDDAAugment("gradcam")
    aug(x, y, cnn)
    assert list(aug.children()) == [] and aug.state_dict() == {}
    assert "salient_fraction=0.2" in repr(aug)


def test_bad_params(batch):
    x, _, _, y = batch
    aug = EDDAAugment("gradcam")
    with pytest.raises(TypeError, match="params must be EDDAParams"):
        aug.apply(x, y, {})
    keep = torch.ones(12, 1, 16, 16, dtype=torch.bool)
    targets = F.one_hot(y, 5).float()
    good = dict(salient_keep=keep, nonsalient_keep=keep, salient_targets=targets, nonsalient_targets=targets,
                saliency=keep.float(), flat=torch.zeros(12, dtype=torch.bool), logits=targets)
    with pytest.raises(ValueError, match="params.salient_keep must be a bool tensor"):
        aug.apply(x, y, EDDAParams(**{**good, "salient_keep": keep.float()}))
    with pytest.raises(ValueError, match="params.nonsalient_targets must have shape"):
        aug.apply(x, y, EDDAParams(**{**good, "nonsalient_targets": targets[:, :3]}))
    with pytest.raises(ValueError, match="params.fill"):
        aug.apply(x, y, EDDAParams(**good, fill=torch.zeros(12, 3, 16, 16)))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        aug(x, y)
