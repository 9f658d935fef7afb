"""The mixing family against naive per-sample ports of each paper's procedure (written from the papers and public
code semantics), on fixed inputs and generators: identical images and labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug.augment import (AttentiveCutMix, CutMix, KeepAutoAugment, KeepCutout, Mixup, SaliencyGuidedMask,
                           SaliencyMix, SnapMix)
from exaug.testing import assert_same_state, snapshot_state

K = 5


def fixed(b=6, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g), torch.randint(0, K, (b,), generator=g)


def maps_fn(images, targets):  # a deterministic "explainer" with distinct values per image
    return images.pow(2).sum(1, keepdim=True) + 1e-3 * torch.arange(images[0, 0].numel()).view(1, 1, *images.shape[-2:])


def energy_norm(images):
    raw = maps_fn(images, None)
    lo = raw.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = raw.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (raw - lo) / (hi - lo)


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, K))


def beta_draws(g, alpha, n):
    seed = int(torch.randint(0, 2**62, (1,), generator=g).item())
    return np.random.default_rng(seed).beta(alpha, alpha, size=n)


def randint(g, high, shape):
    return (torch.rand(shape, generator=g, dtype=torch.float64) * high).floor().long()


def box(lam, cy, cx, h, w):
    r = np.sqrt(1.0 - lam)
    ch, cw = int(h * r), int(w * r)
    return (int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cx - cw // 2, 0, w)),
            int(np.clip(cy + ch // 2, 0, h)), int(np.clip(cx + cw // 2, 0, w)))


def onehot(y):
    return F.one_hot(torch.as_tensor(y), K).double()


def check(batch, ref_images, ref_targets, atol=0.0):
    torch.testing.assert_close(batch.images, ref_images, rtol=0, atol=atol)
    torch.testing.assert_close(batch.targets.double(), ref_targets, rtol=0, atol=1e-6)


def test_cutmix_matches_naive_port():
    images, labels = fixed()
    b, _, h, w = images.shape
    batch = CutMix(K)(images, labels, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(b, generator=g)
    lam = beta_draws(g, 1.0, b)
    cy, cx = randint(g, h, (b,)), randint(g, w, (b,))
    out, tgt = images.clone(), []
    for i in range(b):
        y1, x1, y2, x2 = box(lam[i], int(cy[i]), int(cx[i]), h, w)
        out[i, :, y1:y2, x1:x2] = images[perm[i], :, y1:y2, x1:x2]
        wb = (y2 - y1) * (x2 - x1) / (h * w)
        tgt.append((1 - wb) * onehot(labels[i]) + wb * onehot(labels[perm[i]]))
    check(batch, out, torch.stack(tgt))


def test_mixup_matches_formula():
    images, labels = fixed()
    batch = Mixup(K, alpha=0.4)(images, labels, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    perm = torch.randperm(images.shape[0], generator=g)
    lam = torch.as_tensor(beta_draws(g, 0.4, images.shape[0]))
    ref = lam.view(-1, 1, 1, 1).float() * images + (1 - lam.view(-1, 1, 1, 1).float()) * images[perm]
    check(batch, ref, lam[:, None] * onehot(labels) + (1 - lam[:, None]) * onehot(labels[perm]), atol=1e-6)


@pytest.mark.parametrize("peak", ["sample", "batch"])
def test_saliencymix_matches_naive_port(peak):
    images, labels = fixed()
    b, _, h, w = images.shape
    batch = SaliencyMix(K, maps_fn, peak=peak)(images, labels, model(), generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(b, generator=g)
    lam = beta_draws(g, 1.0, b)
    sal = energy_norm(images)
    out, tgt = images.clone(), []
    for i in range(b):
        src = int(perm[0] if peak == "batch" else perm[i])
        y, x = np.unravel_index(int(np.argmax(sal[src, 0].numpy())), (h, w))
        y1, x1, y2, x2 = box(lam[i], y, x, h, w)
        out[i, :, y1:y2, x1:x2] = images[perm[i], :, y1:y2, x1:x2]
        wb = (y2 - y1) * (x2 - x1) / (h * w)
        tgt.append((1 - wb) * onehot(labels[i]) + wb * onehot(labels[perm[i]]))
    check(batch, out, torch.stack(tgt))


def test_attentive_cutmix_matches_naive_port():
    images, labels = fixed(h=14, w=14)
    b = images.shape[0]
    batch = AttentiveCutMix(K, maps_fn)(images, labels, model(), generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    perm = torch.randperm(b, generator=g)
    sal = energy_norm(images)
    out = images.clone()
    for i in range(b):
        cells = sal[perm[i], 0].view(7, 2, 7, 2).mean((1, 3)).flatten().tolist()
        top = sorted(range(49), key=lambda c: (-cells[c], c))[:6]
        for c in top:
            r, q = divmod(c, 7)
            out[i, :, 2 * r:2 * r + 2, 2 * q:2 * q + 2] = images[perm[i], :, 2 * r:2 * r + 2, 2 * q:2 * q + 2]
    ref_t = (1 - 6 / 49) * onehot(labels) + 6 / 49 * onehot(labels[perm])
    check(batch, out, ref_t)


def test_snapmix_matches_naive_port():
    images, labels = fixed(b=8, h=20, w=20)
    b, _, h, w = images.shape
    batch = SnapMix(K, maps_fn)(images, labels, model(), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(b, generator=g)
    lam1, lam2 = beta_draws(g, 5.0, b), beta_draws(g, 5.0, b)
    cy1, cx1, cy2, cx2 = (randint(g, s, (b,)) for s in (h, w, h, w))
    spm = energy_norm(images).double()
    spm = spm / spm.sum((1, 2, 3), keepdim=True)
    out, tgt, mixed_any = images.clone(), [], False
    for i in range(b):
        a1 = box(lam1[i], int(cy1[i]), int(cx1[i]), h, w)
        a2 = box(lam2[i], int(cy2[i]), int(cx2[i]), h, w)
        area1, area2 = (a1[2] - a1[0]) * (a1[3] - a1[1]), (a2[2] - a2[0]) * (a2[3] - a2[1])
        if area1 > 4 and area2 > 4:
            mixed_any = True
            patch = images[perm[i]:perm[i] + 1, :, a2[0]:a2[2], a2[1]:a2[3]]
            out[i, :, a1[0]:a1[2], a1[1]:a1[3]] = F.interpolate(patch, size=(a1[2] - a1[0], a1[3] - a1[1]),
                                                                mode="bilinear", align_corners=True)[0]
            wa = 1 - float(spm[i, 0, a1[0]:a1[2], a1[1]:a1[3]].sum())
            wb = float(spm[perm[i], 0, a2[0]:a2[2], a2[1]:a2[3]].sum())
        else:
            wa, wb = 1.0, 0.0
        tgt.append(wa * onehot(labels[i]) + wb * onehot(labels[perm[i]]))
    assert mixed_any
    check(batch, out, torch.stack(tgt), atol=1e-5)


def test_snapmix_normalized_weights_sum_to_one_and_random_is_area():
    images, labels = fixed(b=8, h=20, w=20)
    batch = SnapMix(K, maps_fn, normalize_weights=True)(images, labels, model(), generator=torch.Generator())
    torch.testing.assert_close(batch.targets.sum(1), torch.ones(8))
    params = SnapMix(K, "random").draw(images, labels, None, generator=torch.Generator().manual_seed(0))
    area = params.mask.flatten(1).double().mean(1)
    torch.testing.assert_close(params.weight_a, 1 - area)


def test_keepcutout_matches_naive_port():
    images, labels = fixed(b=6, h=16, w=16)
    b, _, h, w = images.shape
    aug = KeepCutout(K, maps_fn, length=8, threshold=0.3, trials=5)
    batch = aug(images, labels, model(), generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(6)
    cy, cx = randint(g, h, (b, 5)), randint(g, w, (b, 5))
    sal = energy_norm(images)
    out = images.clone()
    for i in range(b):
        scores = []
        for t in range(5):
            y1, y2 = max(int(cy[i, t]) - 4, 0), min(int(cy[i, t]) + 4, h)
            x1, x2 = max(int(cx[i, t]) - 4, 0), min(int(cx[i, t]) + 4, w)
            scores.append((float(sal[i, 0, y1:y2, x1:x2].mean()), (y1, y2, x1, x2)))
        ok = [s for s in scores if s[0] < 0.3]
        y1, y2, x1, x2 = (ok[0] if ok else min(scores, key=lambda s: s[0]))[1]
        out[i, :, y1:y2, x1:x2] = 0
    check(batch, out, onehot(labels), atol=1e-6)


def test_keepautoaugment_keeps_the_salient_box():
    images, labels = fixed(b=4, h=16, w=16)
    images = images.sigmoid()  # pixel values in [0, 1]
    aug = KeepAutoAugment(K, maps_fn, length=6, threshold=0.9, trials=8, policy_groups=2)
    params = aug.draw(images, labels, model(), generator=torch.Generator().manual_seed(7))
    again = aug.draw(images, labels, model(), generator=torch.Generator().manual_seed(7))
    assert torch.equal(params.source, again.source) and torch.equal(params.mask, again.mask)  # replayable
    out = aug(images, labels, params=params).images
    kept = ~params.mask
    assert kept.flatten(1).sum(1).min() > 0
    assert torch.equal(out * kept, images * kept)
    assert torch.equal(out * params.mask, params.source * params.mask)
    sal = energy_norm(images)
    assert bool(((sal * kept).flatten(1).amax(1) >= 0.9).all())


def test_sgt_masks_the_least_salient_pixels_with_in_range_values():
    images, labels = fixed(b=4, h=8, w=8)
    batch = SaliencyGuidedMask(K, maps_fn, fraction=0.25)(images, labels, model(), generator=torch.Generator())
    changed = (batch.images != images).any(1)
    sal = energy_norm(images)[:, 0]
    for i in range(4):
        expected = torch.zeros(64, dtype=torch.bool)
        expected[sal[i].flatten().argsort()[:16]] = True
        assert torch.equal(changed[i].flatten(), expected)
        lo, hi = images[i].min(), images[i].max()
        assert bool((batch.images[i] >= lo).all() and (batch.images[i] <= hi).all())


@pytest.mark.parametrize("make", [lambda: CutMix(K), lambda: Mixup(K), lambda: SaliencyMix(K),
                                  lambda: AttentiveCutMix(K, "random"), lambda: SnapMix(K, "random", normalize_weights=True),
                                  lambda: SaliencyMix(K, "random")])
def test_degenerate_inputs(make):
    aug = make()
    # batch of one, one class, flat (constant) images
    flat = torch.ones(1, 3, 8, 8)
    batch = aug(flat, torch.tensor([2]), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(batch.images).all() and torch.allclose(batch.targets.sum(1), torch.ones(1))
    assert batch.targets[0, 2] == pytest.approx(1.0)


def test_model_based_mixes_leave_the_model_untouched():
    net = model().train()
    before = snapshot_state(net)
    images, labels = fixed(b=4, h=8, w=8)
    for aug in (SnapMix(K, "gradcam"), AttentiveCutMix(K, "gradcam", grid=4, top_k=3), KeepCutout(K, length=4),
                SaliencyGuidedMask(K)):
        out = aug(images, labels, net, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.images).all()
    assert_same_state(before, snapshot_state(net))


def test_random_saliencymix_peaks_are_uniform():
    images, labels = torch.zeros(4000, 1, 4, 4), torch.zeros(4000, dtype=torch.long)
    params = SaliencyMix(K, "random").draw(images, labels, generator=torch.Generator().manual_seed(0))
    peaks = params.saliency.flatten(1).argmax(1)
    counts = torch.bincount(peaks, minlength=16).double()
    chi2 = float(((counts - 250) ** 2 / 250).sum())
    assert chi2 < 40  # 15 d.o.f.: p < 0.001 above ~37.7


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_classes"):
        CutMix(0)
    with pytest.raises(ValueError, match="top_k"):
        AttentiveCutMix(K, grid=2, top_k=5)
    with pytest.raises(ValueError, match="model is required"):
        SnapMix(K, "gradcam")(*fixed(b=2, h=8, w=8))
