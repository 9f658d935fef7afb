"""View transforms: per-image torchvision views, dataset wrappers, and the batched Kornia view."""

from __future__ import annotations

import inspect

import pytest
import torch
from PIL import Image

import exaug.transforms as transforms_module
from exaug.data import SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes
from exaug.transforms import (
    DeviceViewAugment, ExConTransform, TwoCropTransform, standard_view, supcon_random_view, unnormalize,
)

MEAN, STD = SYNTHETIC_MEAN, SYNTHETIC_STD


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """``(256, 3, 32, 32)`` synthetic images in [0, 1]."""
    ds = SyntheticShapes("train", 256, seed=1)
    return torch.stack([ds.image(i) for i in range(len(ds))])


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy())


@pytest.mark.parametrize("kind", ["float", "uint8", "pil"])
def test_views_accept_pil_and_tensors(images: torch.Tensor, kind: str) -> None:
    x = {"float": images[0], "uint8": (images[0] * 255).round().byte(), "pil": to_pil(images[0])}[kind]
    for view in (supcon_random_view(24, MEAN, STD), standard_view(24, MEAN, STD)):
        out = view(x)
        assert type(out) is torch.Tensor  # plain tensor, not a tv_tensors.Image subclass
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_standard_view_is_resize_and_normalise(images: torch.Tensor) -> None:
    out = standard_view(32, MEAN, STD)(images[0])
    torch.testing.assert_close(unnormalize(out, MEAN, STD), images[0])
    from_pil = standard_view(32, MEAN, STD)(to_pil(images[0]))
    torch.testing.assert_close(from_pil, out, atol=1 / 255 / min(STD) + 1e-6, rtol=0)
    assert standard_view(16, MEAN, STD)(images[0]).shape == (3, 16, 16)


def test_dataset_view_wrappers(images: torch.Tensor) -> None:
    random_view, plain = supcon_random_view(32, MEAN, STD), standard_view(32, MEAN, STD)
    a, b = TwoCropTransform(random_view)(images[0])
    assert a.shape == b.shape == (3, 32, 32) and not torch.equal(a, b)
    views = ExConTransform(random_view, plain)(images[0])
    assert len(views) == 3
    torch.testing.assert_close(views[0], plain(images[0]))
    assert not torch.equal(views[1], views[2])
    ds = SyntheticShapes("train", 4, transform=ExConTransform(random_view, plain))
    assert [v.shape for v in ds[0][0]] == [(3, 32, 32)] * 3


def test_device_augment_shapes_and_per_sample_parameters(images: torch.Tensor) -> None:
    augment = DeviceViewAugment(24, MEAN, STD)
    same = images[:1].repeat(16, 1, 1, 1)
    out = augment(same)
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32 and out.device == same.device
    # One image repeated gives 16 different views: parameters are drawn per sample.
    assert len({tuple(v.flatten()[:64].tolist()) for v in out}) == 16


def test_device_augment_is_seeded(images: torch.Tensor) -> None:
    augment = DeviceViewAugment(32, MEAN, STD)
    torch.manual_seed(123)
    first = augment(images[:32])
    torch.manual_seed(123)
    torch.testing.assert_close(augment(images[:32]), first, rtol=0, atol=0)
    assert not torch.equal(augment(images[:32]), first)


def test_device_augment_is_device_agnostic(images: torch.Tensor) -> None:
    source = inspect.getsource(transforms_module)
    assert ".cuda(" not in source and "device=\"cuda" not in source
    augment = DeviceViewAugment(32, MEAN, STD)
    assert {name for name, _ in augment.named_buffers()} == {"mean", "std"}  # moved by .to(device)
    assert augment(images[:4].double()).dtype == torch.float64  # follows the input, no hard-coded dtype
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        augment(images[0])
    with pytest.raises(ValueError, match="float"):
        augment((images[:2] * 255).byte())


def _view_statistics(views: torch.Tensor) -> torch.Tensor:
    """Per-image statistics ``(N, 8)``: channel means (3), channel second moments (3) of the normalised view
    (together: the per-channel means and stds over the batch), whether the view is grey (RandomGrayscale), and
    the mean absolute horizontal pixel difference (smaller when RandomResizedCrop zooms in)."""
    pixels = unnormalize(views, MEAN, STD)
    grey = (pixels.std(dim=1).amax(dim=(1, 2)) < 1e-3).to(views.dtype)
    roughness = (pixels[..., 1:] - pixels[..., :-1]).abs().mean(dim=(1, 2, 3))
    return torch.cat([views.mean((2, 3)), views.pow(2).mean((2, 3)), grey[:, None], roughness[:, None]], dim=1)


def _z_scores(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Two-sample z-score of the difference of the batch means of each statistic."""
    standard_error = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    return (a.mean(0) - b.mean(0)) / standard_error


def test_device_augment_matches_torchvision_statistics(images: torch.Tensor) -> None:
    # The views are random, so two correct implementations differ only by sampling noise. Each statistic is a
    # mean over independent images, so its standard error follows from the per-image spread; the tolerance is
    # 4 standard errors of the difference (false alarm < 1e-4 per statistic; the test is seeded anyway). For
    # 256 images this is ~0.24 on the normalised channel means (0.06 in [0, 1] pixel units), ~0.28 on the second
    # moments and ~0.14 on the grey fraction (expected 0.2: binomial, 4 SE = 0.1 for either path alone).
    per_image = supcon_random_view(32, MEAN, STD)
    reference = _view_statistics(torch.stack([per_image(x) for x in images]))
    batched = _view_statistics(DeviceViewAugment(32, MEAN, STD)(images))
    z = _z_scores(reference, batched)
    assert z.abs().max() < 4, f"z-scores {z.tolist()}"
    assert abs(reference[:, 6].mean() - 0.2) < 0.1 and abs(batched[:, 6].mean() - 0.2) < 0.1
    # The check has power: un-augmented views (no crop zoom, no grey views) are rejected.
    plain = _view_statistics(torch.stack([standard_view(32, MEAN, STD)(x) for x in images]))
    assert _z_scores(reference, plain).abs().max() > 4


@pytest.mark.parametrize("batched", [False, True])
def test_light_views_keep_colours_and_whole_image(images: torch.Tensor, batched: bool) -> None:
    # crop_scale (1, 1) crops the whole image (both libraries fall back to it when no other aspect fits) and colour=False skips jitter and grayscale, so
    # every view is the standard view or its mirror image; the default view is not (its power check).
    x = images[:64]
    plain = torch.stack([standard_view(32, MEAN, STD)(v) for v in x])
    if batched:
        views = DeviceViewAugment(32, MEAN, STD, crop_scale=(1.0, 1.0), colour=False)
        light, default = views(x), DeviceViewAugment(32, MEAN, STD)(x)
    else:
        view = supcon_random_view(32, MEAN, STD, crop_scale=(1.0, 1.0), colour=False)
        light = torch.stack([view(v) for v in x])
        default = torch.stack([supcon_random_view(32, MEAN, STD)(v) for v in x])
    same = (light - plain).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (light - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < len(x)
    assert not bool(((default - plain).abs().amax(dim=(1, 2, 3)) < 1e-4).all())


def test_unnormalize_inverts_normalisation() -> None:
    x = torch.rand(2, 3, 5, 5)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    normalised = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(unnormalize(normalised, mean, std), x)
    torch.testing.assert_close(unnormalize(normalised[0], mean, std), x[0])
    with pytest.raises(ValueError, match="C=3"):
        unnormalize(torch.rand(4, 5, 5), mean, std)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        supcon_random_view(0, MEAN, STD)
    with pytest.raises(ValueError, match="one value per channel"):
        standard_view(32, (0.5, 0.5), STD)
    with pytest.raises(ValueError, match="std must be positive"):
        DeviceViewAugment(32, MEAN, (0.2, 0.0, 0.2))
    for bad in ((0.0, 1.0), (0.8, 0.5), (0.5,)):
        with pytest.raises(ValueError, match="crop_scale"):
            supcon_random_view(32, MEAN, STD, crop_scale=bad)
        with pytest.raises(ValueError, match="crop_scale"):
            DeviceViewAugment(32, MEAN, STD, crop_scale=bad)
