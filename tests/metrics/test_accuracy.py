"""Top-k, kNN and linear-probe accuracy against naive references."""

from __future__ import annotations

import pytest
import torch

from exaug.metrics import Accuracy, knn_accuracy, linear_probe, topk_accuracy


def naive_topk(logits, targets, k):
    hits = 0
    for row, t in zip(logits.tolist(), targets.tolist()):
        ranked = sorted(range(len(row)), key=lambda i: -row[i])
        hits += t in ranked[:k]
    return hits / len(targets)


def test_topk_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    out = topk_accuracy(logits, targets, ks=(1, 3, 5, 7, 10))
    for k in (1, 3, 5, 7):
        assert float(out[k]) == pytest.approx(naive_topk(logits, targets, k))
    assert float(out[10]) == 1.0  # k above the number of classes


def test_accuracy_streaming_equals_one_batch():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(40, 6, generator=g), torch.randint(0, 6, (40,), generator=g)
    metric = Accuracy(ks=(1, 5))
    for chunk_l, chunk_t in zip(logits.split(7), targets.split(7)):
        metric.update(chunk_l, chunk_t)
    full = topk_accuracy(logits, targets, ks=(1, 5))
    assert metric.compute() == {k: pytest.approx(float(v)) for k, v in full.items()}
    metric.reset()
    with pytest.raises(RuntimeError):
        metric.compute()


def naive_knn(train, train_y, test, test_y, k, t, num_classes):
    train = torch.nn.functional.normalize(train, dim=1)
    test = torch.nn.functional.normalize(test, dim=1)
    correct = 0
    for x, y in zip(test, test_y):
        sims = [(float(x @ z), int(c)) for z, c in zip(train, train_y)]
        sims.sort(key=lambda p: -p[0])
        votes = [0.0] * num_classes
        for s, c in sims[:k]:
            votes[c] += float(torch.tensor(s / t).exp())
        correct += max(range(num_classes), key=lambda c: votes[c]) == int(y)
    return correct / len(test_y)


def test_knn_matches_naive_loop_and_is_chunk_invariant():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(3, 8, generator=g)
    train_y = torch.randint(0, 3, (60,), generator=g)
    test_y = torch.randint(0, 3, (25,), generator=g)
    train = centres[train_y] + 0.8 * torch.randn(60, 8, generator=g)
    test = centres[test_y] + 0.8 * torch.randn(25, 8, generator=g)
    expected = naive_knn(train, train_y, test, test_y, k=10, t=0.1, num_classes=3)
    for chunk in (1, 4, 1000):
        got = knn_accuracy(train, train_y, test, test_y, k=10, temperature=0.1, chunk_size=chunk)
        assert float(got) == pytest.approx(expected)
    # k above the bank size is capped; a single-class problem is solved exactly.
    zeros_train, zeros_test = torch.zeros(60, dtype=torch.long), torch.zeros(25, dtype=torch.long)
    assert float(knn_accuracy(train, zeros_train, test, zeros_test, k=500)) == 1.0


def test_linear_probe_separable_and_deterministic():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(80, 5, generator=g)
    y = (feats[:, 0] + feats[:, 1] > 0).long()
    a = linear_probe(feats[:60], y[:60], feats[60:], y[60:])
    b = linear_probe(feats[:60], y[:60], feats[60:], y[60:])
    assert float(a) == float(b) and float(a) >= 0.9


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        topk_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="ks"):
        topk_accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), ks=(0,))
    with pytest.raises(TypeError, match="targets"):
        topk_accuracy(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="train_feats"):
        knn_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2).long())
