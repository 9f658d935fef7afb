"""Drop / increase: batched implementation against a naive per-image loop, analytic cases, contract."""

from __future__ import annotations

import pytest
import torch

from exaug.explainers import create_explainer
from exaug.metrics import DROP_INCREASE_KEYS, DropIncrease, drop_increase
from exaug.testing import assert_same_state, snapshot_state


def naive_drop_increase(model, images, saliency, q, fill_value=0.0):
    """One image at a time, with sorting instead of topk and plain Python arithmetic."""
    model.eval()
    rows = []
    with torch.no_grad():
        for x, s in zip(images, saliency):
            probs = model(x[None]).softmax(dim=1)[0]
            c = int(probs.argmax())
            p = float(probs[c])
            k = int(round(q * s.numel()))
            values = s.flatten().tolist()
            order = sorted(range(len(values)), key=lambda i: -values[i])[:k]
            keep = torch.zeros(s.numel(), dtype=torch.bool)
            keep[order] = True
            xp = torch.where(keep.view(1, *s.shape[-2:]), x, torch.full_like(x, fill_value))
            pp = float(model(xp[None]).softmax(dim=1)[0, c])
            rows.append((float(pp < p), max(0.0, p - pp) / p, float(pp > p), max(0.0, pp - p) / p))
    n = len(rows)
    return {key: sum(r[i] for r in rows) / n for i, key in enumerate(DROP_INCREASE_KEYS)}


def distinct_saliency(b: int, h: int, w: int, seed: int = 3) -> torch.Tensor:
    # A random permutation per image: no ties, so the top-k set is unambiguous for both implementations.
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(h * w, generator=g).float().view(1, h, w) / (h * w) for _ in range(b)])


@pytest.mark.parametrize("fractions", [(0.15, 0.30, 0.45), (0.05, 0.5, 0.9)])
def test_matches_naive_loop(cnn, images, fractions):
    saliency = distinct_saliency(*images.shape[:1], 16, 16)
    batched = drop_increase(cnn, images, saliency, keep_fractions=fractions)
    reference_model = type(cnn)()
    reference_model.load_state_dict(cnn.state_dict())
    for q in fractions:
        expected = naive_drop_increase(reference_model, images, saliency, q)
        for key in DROP_INCREASE_KEYS:
            assert float(batched[q][key]) == pytest.approx(expected[key], abs=1e-5), (q, key)


def test_class_uses_one_explainer_pass_and_matches_function(cnn, images, monkeypatch):
    explainer = create_explainer("gradcam", cnn, target_layer="block2")
    calls = []
    original = explainer.explain
    monkeypatch.setattr(explainer, "explain", lambda *a, **k: calls.append(1) or original(*a, **k))
    metric = DropIncrease(explainer, cnn, keep_fractions=(0.1, 0.2, 0.3, 0.4))
    metric.update(images[:3])
    metric.update(images[3:])
    assert len(calls) == 2  # one per batch, whatever the number of fractions
    result = metric.compute()
    explanation = original(images)
    direct = drop_increase(
        cnn, images, explanation.saliency, keep_fractions=(0.1, 0.2, 0.3, 0.4), flat=explanation.flat
    )
    for q in (0.1, 0.2, 0.3, 0.4):
        for key in DROP_INCREASE_KEYS:
            assert result[q][key] == pytest.approx(float(direct[q][key]), abs=1e-6)
    metric.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_chunked_update_matches_whole_batch(cnn, images, monkeypatch):
    explainer = create_explainer("gradcam", cnn, target_layer="block2")
    whole = DropIncrease(explainer, cnn, chunk_size=None)
    whole.update(images)
    calls = []
    original = explainer.explain
    monkeypatch.setattr(explainer, "explain", lambda x, *a, **k: calls.append(x.shape[0]) or original(x, *a, **k))
    chunked = DropIncrease(explainer, cnn, chunk_size=4)
    chunked.update(images)
    assert calls == [4, 2]
    for q, scores in whole.compute().items():
        for key, value in scores.items():
            assert chunked.compute()[q][key] == pytest.approx(value, abs=1e-6), (q, key)
    with pytest.raises(ValueError, match="chunk_size"):
        DropIncrease(explainer, cnn, chunk_size=0)


def test_keep_everything_changes_nothing(cnn, images):
    out = drop_increase(cnn, images, torch.rand(6, 1, 16, 16), keep_fractions=(1.0,))[1.0]
    assert all(float(v) == 0.0 for v in out.values())


def test_per_sample_values_and_ranges(cnn, images):
    out = drop_increase(cnn, images, torch.rand(6, 1, 16, 16), reduction="none", fill="blur")
    for terms in out.values():
        assert terms["drop_percent"].shape == (6,)
        assert torch.all((terms["drop_percent"] + terms["increase_percent"]) <= 1)
        assert torch.all(terms["drop_mag"] >= 0) and torch.all(terms["drop_mag"] <= 1)
        assert torch.isfinite(torch.stack(list(terms.values()))).all()


def test_single_class_batch_and_untouched_model(cnn, images):
    before = snapshot_state(cnn)
    metric = DropIncrease("gradcam", cnn, target_layer="block2")
    metric.update(images[:1])
    result = metric.compute()
    assert_same_state(before, snapshot_state(cnn))
    assert set(result) == {0.15, 0.30, 0.45}
    assert all(0 <= v for r in result.values() for v in r.values())


def test_errors(cnn, images):
    with pytest.raises(ValueError, match="empty"):
        drop_increase(cnn, images[:0], torch.rand(0, 1, 16, 16))
    with pytest.raises(ValueError, match="keep_fractions"):
        drop_increase(cnn, images, torch.rand(6, 1, 16, 16), keep_fractions=(1.5,))
    with pytest.raises(ValueError, match="keep_fractions"):
        drop_increase(cnn, images, torch.rand(6, 1, 16, 16), keep_fractions=())
    with pytest.raises(ValueError, match="saliency"):
        drop_increase(cnn, images, torch.rand(6, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown explainer"):
        DropIncrease("gradcamm", cnn)
