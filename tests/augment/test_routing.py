"""ExplanationMaskAugment's draw / apply split: routing replayed from hand-made parameters, no explainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exaug.augment import ExplanationMaskAugment, MaskParams, SaliencyCache
from exaug.testing import assert_same_state, snapshot_state


def hand_made_params(x: torch.Tensor, correct: list[bool]) -> MaskParams:
    """Parameters no explainer produced: a fixed keep pattern and a chosen ``correct`` pattern."""
    b, _, h, w = x.shape
    g = torch.Generator().manual_seed(5)
    saliency = torch.rand(b, 1, h, w, generator=g)
    keep = saliency > 0.5
    return MaskParams(saliency=saliency, flat=torch.zeros(b, dtype=torch.bool), keep=keep,
                      masked=torch.where(keep, x, torch.full_like(x, -3.0)), correct=torch.tensor(correct))


def naive_route(mode, x_masked, correct, v1, v2, y):
    """Reference: Algorithm 1's routing, one sample at a time."""
    first, extra, extra_labels = [], [], []
    for i in range(len(y)):
        if correct[i]:
            first.append(x_masked[i])
        else:
            first.append(v1[i])
            if mode == "exconb":
                extra.append(x_masked[i])
                extra_labels.append(int(y[i]))
    extra_rows = list(extra)
    images = torch.stack(first + extra_rows + list(v2) + extra_rows)  # background copies identical in both views
    labels = torch.tensor([int(t) for t in y] + extra_labels)
    background = torch.tensor([False] * len(y) + [True] * len(extra_labels))
    return images, labels, background


PATTERNS = [
    [True, False, True, True, False, False, True, False, True, True, False, True],
    [True] * 12,
    [False] * 12,
]


@pytest.mark.parametrize("mode", ["excon", "exconb"])
@pytest.mark.parametrize("pattern", PATTERNS, ids=["mixed", "all_right", "all_wrong"])
def test_apply_routes_hand_made_params_like_a_naive_loop(mode, pattern, batch):
    x, v1, v2, y = batch
    params = hand_made_params(x, pattern)
    # An explainer that cannot run: routing must not need it.
    aug = ExplanationMaskAugment(lambda im, t: pytest.fail("apply must not explain"), mode=mode)
    out = aug.apply(x, (v1, v2), y, params)
    images, labels, background = naive_route(mode, params.masked, pattern, v1, v2, y)
    assert torch.equal(out.images, images)
    assert torch.equal(out.labels, labels)
    assert torch.equal(out.background, background)
    assert out.num_rows == 12 + (pattern.count(False) if mode == "exconb" else 0)
    # The batch carries the parameters it was routed by.
    assert out.correct is params.correct and out.keep is params.keep and out.saliency is params.saliency
    # forward with params= is the same replay, and needs no model.
    again = aug(x, (v1, v2), y, params=params)
    assert torch.equal(again.images, out.images) and torch.equal(again.labels, out.labels)


def test_draw_then_apply_equals_forward(cnn, batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", mode="exconb")
    params = aug.draw(x, y, cnn)
    direct = aug(x, (v1, v2), y, cnn)
    for field in ("saliency", "flat", "keep", "masked", "correct"):
        assert torch.equal(getattr(params, field), getattr(direct, field)), field
    replayed = aug.apply(x, (v1, v2), y, params)
    assert torch.equal(replayed.images, direct.images) and torch.equal(replayed.background, direct.background)
    # The same parameters route differently only through the mode.
    excon = ExplanationMaskAugment("gradcam", mode="excon").apply(x, (v1, v2), y, params)
    assert torch.equal(excon.images[:12], direct.images[:12]) and excon.num_rows == 12


def test_noise_fill_follows_the_generator(cnn, batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", fill="noise")
    a = aug.draw(x, y, cnn, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG must not matter when a generator is given
    b = aug.draw(x, y, cnn, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.masked, b.masked)
    c = aug.draw(x, y, cnn, generator=torch.Generator().manual_seed(4))
    dropped = ~a.keep.expand_as(x)
    assert dropped.any() and not torch.equal(a.masked[dropped], c.masked[dropped])
    # Without a generator: torch's global RNG, as before.
    torch.manual_seed(7)
    d = aug.draw(x, y, cnn)
    torch.manual_seed(7)
    assert torch.equal(d.masked, aug.draw(x, y, cnn).masked)


def test_disabled_ignores_params_and_model(batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", enabled=False)
    out = aug(x, (v1, v2), y, params=hand_made_params(x, [True] * 12))
    assert torch.equal(out.images, torch.cat([v1, v2])) and out.masked is None


def test_model_is_never_registered_and_cache_is(cnn, batch):
    x, v1, v2, y = batch
    cache = SaliencyCache(100, 16)
    aug = ExplanationMaskAugment("gradcam", cache=cache)
    aug(x, (v1, v2), y, cnn, torch.arange(12))
    assert aug.explainer_for(cnn).model is cnn  # the explainer is built and kept ...
    assert all(m is aug or m is cache for m in aug.modules())  # ... but neither it nor the model is a submodule
    assert list(aug.parameters()) == []
    assert set(aug.state_dict()) == {"cache.maps", "cache.flat", "cache.epoch_computed", "cache._extra_state"}
    before = snapshot_state(cnn)
    assert aug.to("meta") is aug and cache.device.type == "meta"  # the cache moves with the augment ...
    assert_same_state(before, snapshot_state(cnn))  # ... the model stays where it was
    assert next(cnn.parameters()).device.type == "cpu"
    assert "cache" not in dict(ExplanationMaskAugment("gradcam").named_children())
    # An explainer given as an nn.Module is not registered either.
    module_explainer = nn.Conv2d(3, 1, 1)
    assert list(ExplanationMaskAugment(module_explainer).parameters()) == []


def test_bad_params(batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam")
    params = hand_made_params(x, [True] * 12)
    with pytest.raises(TypeError, match="params must be MaskParams"):
        aug.apply(x, (v1, v2), y, {"correct": params.correct})
    with pytest.raises(ValueError, match="params.masked must have the shape of originals"):
        aug.apply(x[:6], (v1[:6], v2[:6]), y[:6], params)
    params.correct = params.correct.long()
    with pytest.raises(ValueError, match=r"params.correct must be a bool tensor of shape \(12,\)"):
        aug.apply(x, (v1, v2), y, params)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        aug(x, (v1, v2), y)  # neither a model nor params
