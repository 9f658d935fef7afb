"""t-SNE plot and training stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exaug.metrics import compute_embeddings, plot_tsne, training_stability
from exaug.testing import assert_same_state, snapshot_state


def test_training_stability_by_hand():
    runs = [[70.0, 71.0, 72.0], [72.0, 71.0, 76.0]]
    # std across the two seeds (ddof 0) per epoch: 1, 0, 2 -> mean 1.
    assert training_stability(runs) == pytest.approx(1.0)
    assert training_stability(runs, start=1) == pytest.approx(1.0)
    assert training_stability(torch.tensor(runs), end=2) == pytest.approx(0.5)
    unbiased = np.std(np.array(runs), axis=0, ddof=1).mean()
    assert training_stability(runs, unbiased=True) == pytest.approx(unbiased)
    assert training_stability([[50.0] * 4] * 3) == 0.0


def test_training_stability_errors():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        training_stability([[1.0, 2.0]])
    with pytest.raises(ValueError, match="same number of epochs"):
        training_stability([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="empty"):
        training_stability([[1.0, 2.0], [1.0, 3.0]], start=5)
    with pytest.raises(ValueError, match="NaN"):
        training_stability([[1.0, float("nan")], [1.0, 3.0]])


def test_embeddings_and_tsne_png(cnn, images, tmp_path):
    pytest.importorskip("sklearn")
    encoder = torch.nn.Sequential(cnn.block1, cnn.block2, torch.nn.AdaptiveAvgPool2d(1))
    before = snapshot_state(cnn)
    feats = compute_embeddings(encoder, images, batch_size=4)
    assert_same_state(before, snapshot_state(cnn))
    torch.testing.assert_close(feats, compute_embeddings(encoder, images, batch_size=100))
    assert feats.shape == (6, 16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    views = feats.repeat(3, 1) + 0.05 * torch.randn(18, 16, generator=torch.Generator().manual_seed(0))
    coords = plot_tsne(feats, labels, views, labels.repeat(3), tmp_path / "tsne.png", classes=[0, 1], perplexity=5)
    assert coords.shape == (4 + 12, 2) and np.isfinite(coords).all()
    assert (tmp_path / "tsne.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="at least 3 points"):
        plot_tsne(feats, labels, views, labels.repeat(3), tmp_path / "x.png", classes=[7])
