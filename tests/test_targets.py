"""COCOA targets against naive loops, their use with registry explainers, sampling, and ExConB without labels."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import exaug
from exaug.targets import (
    ContrastiveCorpusSimilarity,
    ContrastiveSimilarity,
    CorpusSimilarity,
    RepresentationSimilarity,
    encode,
    foil_size_bound,
    sample_corpus,
    sample_foil,
)
from exaug.testing import assert_same_state, snapshot_state


class Encoder(nn.Module):
    """Conv + BatchNorm + ReLU + GAP: non-negative (B, 6) representations, BN makes train/eval differ."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(F.relu(self.bn(self.conv(x)))).flatten(1)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    model = Encoder()
    model(torch.randn(8, 3, 8, 8))  # non-default running statistics
    return model.train()


def images(n, seed):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def naive_ccs(encoder, x, corpus, foil, similarity="cosine"):
    """mean_c sim(f(x), f(c)) - mean_f sim(f(x), f(foil)), one pair at a time (eval mode)."""
    enc = copy.deepcopy(encoder).eval()
    sim = (lambda a, b: F.cosine_similarity(a, b, dim=0)) if similarity == "cosine" else (lambda a, b: a @ b)
    with torch.no_grad():
        out = []
        for xi in x:
            fx = enc(xi[None])[0]
            c = torch.stack([sim(fx, enc(ci[None])[0]) for ci in corpus]).mean()
            f = torch.stack([sim(fx, enc(fi[None])[0]) for fi in foil]).mean() if foil is not None else 0.0
            out.append(c - f)
    return torch.stack(out)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_contrastive_corpus_similarity_matches_naive_loop(encoder, similarity):
    corpus, foil, x = images(5, 1), images(7, 2), images(4, 3)
    before = snapshot_state(encoder)
    target = ContrastiveCorpusSimilarity(encoder, corpus, foil, similarity=similarity, batch_size=3)
    assert_same_state(before, snapshot_state(encoder))  # directions computed isolated, no BN update
    with torch.no_grad():
        out = copy.deepcopy(target).eval()(x)
    assert out.shape == (4, 1)
    torch.testing.assert_close(out[:, 0], naive_ccs(encoder, x, corpus, foil, similarity), atol=1e-5, rtol=1e-5)
    assert target.foil_size == 7


def test_corpus_and_label_free_targets_match_naive_loops(encoder):
    corpus, foil, x = images(5, 1), images(6, 2), images(3, 3)
    enc = copy.deepcopy(encoder).eval()
    with torch.no_grad():
        corpus_only = copy.deepcopy(CorpusSimilarity(encoder, corpus)).eval()(x)[:, 0]
        torch.testing.assert_close(corpus_only, naive_ccs(encoder, x, corpus, None), atol=1e-5, rtol=1e-5)
        label_free = RepresentationSimilarity.from_images(encoder, x).eval()(x)
        torch.testing.assert_close(label_free.diagonal(), torch.ones(3), atol=1e-5, rtol=0)
        contrastive = ContrastiveSimilarity.from_images(encoder, x, foil).eval()(x)
        expected = torch.stack([naive_ccs(encoder, x[b:b + 1], x[b:b + 1], foil)[0] for b in range(3)])
        torch.testing.assert_close(contrastive.diagonal(), expected, atol=1e-5, rtol=1e-5)
        reps = enc(x)
        torch.testing.assert_close(RepresentationSimilarity(encoder, reps[0]).eval()(x)[:, 0],
                                   F.cosine_similarity(enc(x), reps[:1]), atol=1e-5, rtol=0)


def test_per_class_corpora_give_one_column_per_class_and_refresh_follows_the_encoder(encoder):
    corpora = [images(4, 10 + k) + k for k in range(3)]
    foil = images(6, 20)
    target = ContrastiveCorpusSimilarity(encoder, corpora, foil)
    x = images(2, 4)
    with torch.no_grad():
        out = copy.deepcopy(target).eval()(x)
        assert out.shape == (2, 3)
        for k in range(3):
            torch.testing.assert_close(out[:, k], naive_ccs(encoder, x, corpora[k], foil), atol=1e-5, rtol=1e-5)
        old = target.directions.clone()
        encoder.conv.weight.mul_(-1)
    assert torch.equal(target.directions, old)
    assert not torch.allclose(target.refresh().directions, old)


@pytest.mark.parametrize("name, options", [
    ("integrated_gradients", {"n_steps": 4}),
    ("saliency", {}),
    ("rise", {"n_masks": 64, "grid": 4}),
    ("gradcam", {}),
])
def test_targets_plug_into_gradient_and_perturbation_explainers(encoder, name, options):
    target = ContrastiveCorpusSimilarity(encoder, images(5, 1), images(7, 2))
    before = snapshot_state(encoder)
    explainer = exaug.create_explainer(name, target, **options)
    x = images(3, 3)
    exp = explainer.explain(x, 0)
    assert exp.saliency.shape == (3, 1, 8, 8) and not exp.flat.any()
    assert torch.equal(exp.targets, torch.zeros(3, dtype=torch.long))
    assert torch.equal(explainer.explain(x, None).targets, torch.zeros(3, dtype=torch.long))  # argmax of 1 column
    assert_same_state(before, snapshot_state(encoder))
    # Per-explicand columns: targets = arange(B) explains each image by its own representation.
    label_free = RepresentationSimilarity.from_images(encoder, x)
    per_image = exaug.create_explainer(name, label_free, **options).explain(x, torch.arange(3))
    assert per_image.saliency.shape == (3, 1, 8, 8)


def test_rise_reads_raw_scores_of_targets(encoder):
    target = CorpusSimilarity(encoder, [images(3, 1), images(3, 2)])
    assert exaug.create_explainer("rise", target, n_masks=8).resolved_score(2) == "raw"


class Labelled(Dataset):
    def __init__(self, n=40, with_targets=True):
        self.labels = [i % 4 for i in range(n)]
        if with_targets:
            self.targets = self.labels
        self.loaded = 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.loaded += 1
        return torch.full((3, 2, 2), float(i)), self.labels[i]


@pytest.mark.parametrize("with_targets", [True, False])
def test_sampling_corpus_and_foil(with_targets):
    data = Labelled(with_targets=with_targets)
    state = torch.get_rng_state()
    corpus = sample_corpus(data, 2, n=5, seed=0)
    foil = sample_foil(data, n=12, seed=1, exclude_class=2)
    assert torch.equal(state, torch.get_rng_state())
    ids = corpus[:, 0, 0, 0].long()
    assert corpus.shape == (5, 3, 2, 2) and (ids % 4 == 2).all() and ids.unique().numel() == 5
    foil_ids = foil[:, 0, 0, 0].long()
    assert foil.shape == (12, 3, 2, 2) and (foil_ids % 4 != 2).all() and foil_ids.unique().numel() == 12
    assert torch.equal(corpus, sample_corpus(data, 2, n=5, seed=0))
    assert not torch.equal(corpus, sample_corpus(data, 2, n=5, seed=3))
    with pytest.raises(ValueError, match="only 10 eligible"):
        sample_corpus(data, 1, n=11)
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample_foil(data, n=0)


def test_foil_size_bound_and_errors(encoder):
    assert foil_size_bound() == 1521  # COCOA's 1500 (non-negative ReLU representations)
    assert foil_size_bound(non_negative=False) == 4 * 1521 - 3  # width 2 instead of 1
    with pytest.raises(ValueError, match="delta"):
        foil_size_bound(delta=1.5)
    with pytest.raises(ValueError, match="similarity"):
        CorpusSimilarity(encoder, images(2, 1), similarity="l2")
    with pytest.raises(TypeError, match="foil"):
        ContrastiveCorpusSimilarity(encoder, images(2, 1), [images(2, 2)])
    with pytest.raises(ValueError, match="corpus"):
        CorpusSimilarity(encoder, [])
    with pytest.raises(ValueError, match="explicand_representation"):
        RepresentationSimilarity(encoder, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="batch_size"):
        encode(encoder, images(2, 1), batch_size=0)


def test_cocoa_drives_explanation_mask_augment_without_a_classifier(encoder):
    """The docs/cocoa.md recipe: COCOA saliency per class + a nearest-class-mean check, no classifier head."""
    train = [images(6, 30 + k) + 2 * k for k in range(3)]  # three "classes"
    foil = torch.cat(train)[torch.randperm(18, generator=torch.Generator().manual_seed(0))[:9]]
    cocoa = ContrastiveCorpusSimilarity(encoder, train, foil)  # (N, 3): column k = COCOA target of class k
    nearest_mean = CorpusSimilarity(encoder, train)  # (N, 3): argmax = nearest class mean
    rise = exaug.create_explainer("rise", cocoa, n_masks=64, grid=4, baseline="blur")
    augment = exaug.ExplanationMaskAugment(explainer=lambda x, labels: rise(x, labels), mode="exconb",
                                           keep_fraction=0.5, fill="blur")
    originals = torch.cat([t[:2] for t in train])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    before = snapshot_state(encoder)
    batch = augment(originals, (originals.flip(-1), originals.flip(-2)), labels, nearest_mean)
    assert_same_state(before, snapshot_state(encoder))
    assert batch.saliency.shape == (6, 1, 8, 8) and batch.keep.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert batch.images.shape[0] == 12 + 2 * int((~batch.correct).sum())
