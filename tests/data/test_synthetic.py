"""SyntheticShapes: determinism per index, masks, spurious cue, speed and learnability."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug.data import SHAPE_NAMES, SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes, render_shapes


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_items_types_and_ranges() -> None:
    ds = SyntheticShapes("train", 30, return_mask=True)
    image, label, mask = ds[13]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert label == 13 % 10 and isinstance(label, int)
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.bool and mask.any()
    assert torch.equal(mask, ds.mask(13))
    assert ds.classes == list(SHAPE_NAMES[:10])
    assert ds.targets.bincount().tolist() == [3] * 10
    assert len(SyntheticShapes("train", 4)[0]) == 2  # (image, label) without return_mask
    assert torch.equal(ds[-1][0], ds[29][0])
    with pytest.raises(IndexError):
        ds[30]


def test_image_depends_only_on_seed_split_index() -> None:
    small = SyntheticShapes("train", 20, seed=3)
    large = SyntheticShapes("train", 300, seed=3)
    for i in (0, 7, 19):
        assert torch.equal(small.image(i), large.image(i))
        assert torch.equal(small.mask(i), large.mask(i))
    images, masks, _ = large.render(torch.tensor([250, 7]))  # any order, any batch
    assert torch.equal(images[0].float() / 255, large.image(250)) and torch.equal(masks[1], large.mask(7))
    lazy = SyntheticShapes("train", 300, seed=3, cache=False)
    assert torch.equal(lazy.image(123), large.image(123)) and torch.equal(lazy.mask(5), large.mask(5))
    assert not torch.equal(SyntheticShapes("train", 20, seed=4).image(0), small.image(0))
    assert not torch.equal(SyntheticShapes("test", 20, seed=3).image(0), small.image(0))


def test_masks_cover_a_uniform_object() -> None:
    ds = SyntheticShapes("train", 200)
    for i in range(len(ds)):
        pixels, inside = ds.image(i).flatten(1), ds.mask(i).flatten()
        assert 0.05 < inside.float().mean() < 0.6
        # The object colour differs from the background mean; inside it only noise varies (stripes aside).
        assert (pixels[:, inside].mean(1) - pixels[:, ~inside].mean(1)).abs().sum() > 0.15
        if ds.classes[int(ds.targets[i])] != "striped_blob":
            assert pixels[:, inside].std(1).max() < 0.05


def test_transform_applies_to_image_only() -> None:
    ds = SyntheticShapes("train", 10, return_mask=True, transform=lambda x: x * 2)
    image, _, mask = ds[1]
    assert torch.equal(image, ds.image(1) * 2) and mask.shape == (1, 32, 32)


def test_spurious_cue_correlation() -> None:
    train = SyntheticShapes("train", 2000, spurious=True, spurious_strength=0.9)
    test = SyntheticShapes("test", 2000, spurious=True)
    # Binomial(2000, p) agreement: 0.03 is > 4 standard deviations (0.0067).
    assert abs((train.cues == train.targets).float().mean().item() - 0.9) < 0.03
    assert abs((test.cues == test.targets).float().mean().item() - 0.1) < 0.03
    assert test.cues.bincount(minlength=10).min() > 150  # uniform in test
    # The patch is drawn in the class colour and is not part of the object mask.
    image, mask = train.image(0), train.mask(0)
    assert image[:, :4, :4].flatten(1).std(1).max() < 1e-6
    assert not mask[:, :4, :4].any()
    plain = SyntheticShapes("train", 5)
    assert (plain.cues == -1).all()
    assert torch.equal(SyntheticShapes("train", 5, spurious=True, cache=False).cues, train.cues[:5])


def test_full_strength_cue_alone_predicts_the_class() -> None:
    ds = SyntheticShapes("train", 100, spurious=True, spurious_strength=1.0)
    corners = torch.stack([ds.image(i)[:, 0, 0] for i in range(len(ds))])
    assert torch.equal(ds.cues, ds.targets)
    for c in range(10):
        same = corners[ds.targets == c]
        assert (same - same[0]).abs().max() < 1e-6


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("val", 10)
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes("train", 10, num_classes=13)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticShapes("train", 10, image_size=4)
    with pytest.raises(ValueError, match="spurious_strength"):
        SyntheticShapes("train", 10, spurious=True, spurious_strength=1.5)
    for bad in (-0.1, 1.5, "flat", True):
        with pytest.raises(ValueError, match="texture"):
            SyntheticShapes("train", 10, texture=bad)


def test_texture_scales_the_background_only() -> None:
    textured, flat, half = (SyntheticShapes("train", 64, texture=t) for t in (1.0, 0.0, 0.5))
    assert torch.equal(textured._images, SyntheticShapes("train", 64)._images)  # 1 is the default
    assert torch.equal(textured._masks, flat._masks) and torch.equal(textured._masks, half._masks)
    background = ~flat._masks.expand(-1, 3, -1, -1)
    # texture 0: each image's background is one colour (per channel: max == min over the background pixels).
    flat_bg = torch.where(background, flat._images.float(), float("nan"))
    spread = flat_bg.flatten(2).nan_to_num(-1).amax(2) - flat_bg.flatten(2).nan_to_num(999).amin(2)
    assert spread.max() == 0
    # texture t: the background is the flat colour plus t times the texture (up to uint8 rounding and clamping
    # at 0 / 255, which the comparison leaves out).
    t1, t0, th = (d._images.float() for d in (textured, flat, half))
    inside = background & (t1 > 0) & (t1 < 255) & (th > 0) & (th < 255)
    assert ((th - (t0 + 0.5 * (t1 - t0))).abs()[inside]).max() <= 1.5
    assert (t1 - t0).abs()[inside].mean() > 10  # the default background is textured


def test_defaults_and_statistics() -> None:
    assert len(SyntheticShapes("test")) == 1000
    ds = SyntheticShapes("train", 1000, image_size=16)
    pixels = torch.stack([ds.image(i) for i in range(len(ds))]).transpose(0, 1).flatten(1)
    torch.testing.assert_close(pixels.mean(1), torch.tensor(SYNTHETIC_MEAN), atol=0.015, rtol=0)
    torch.testing.assert_close(pixels.std(1), torch.tensor(SYNTHETIC_STD), atol=0.015, rtol=0)


def test_render_function_is_pure() -> None:
    kwargs = dict(seed=0, split="train", num_classes=10, image_size=16)
    a = render_shapes(torch.arange(5), **kwargs)
    b = render_shapes(torch.arange(5), **kwargs)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_generation_speed() -> None:
    # Single-threaded so that the bound measures the generator, not OpenMP contention on a shared machine;
    # 5000 images take ~0.6-1.3 s there (the target is < 2 s; the margin absorbs a busy CPU).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        SyntheticShapes("train", 5000)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert elapsed < 4.0, f"generating 5000 images took {elapsed:.2f} s"


def test_learnable_by_a_tiny_cnn() -> None:
    train = SyntheticShapes("train", 2000)
    test = SyntheticShapes("test", 500)
    mean, std = torch.tensor(SYNTHETIC_MEAN).view(3, 1, 1), torch.tensor(SYNTHETIC_STD).view(3, 1, 1)
    xtr = (torch.stack([train.image(i) for i in range(len(train))]) - mean) / std
    xte = (torch.stack([test.image(i) for i in range(len(test))]) - mean) / std

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    net = nn.Sequential(block(3, 16), block(16, 32), block(32, 64), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                        nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(2):
        for idx in torch.randperm(len(train)).split(64):
            loss = F.cross_entropy(net(xtr[idx]), train.targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(xte).argmax(1) == test.targets).float().mean().item()
    assert accuracy > 0.5, f"test accuracy {accuracy:.3f} (chance 0.1)"
