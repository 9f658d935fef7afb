"""SaliencyKeep inside kornia pipelines, against the plain functions keep_mask + apply_mask."""

from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch

from exaug.augment import SaliencyKeep, apply_mask, keep_mask


def smooth_saliency(b: int, size: int, seed: int) -> torch.Tensor:
    """Normalised maps that vary smoothly, as upsampled explanations do (many pixels near the threshold)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, 4, 4, generator=g)
    maps = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    lo, hi = maps.amin((2, 3), keepdim=True), maps.amax((2, 3), keepdim=True)
    return (maps - lo) / (hi - lo)


@pytest.mark.parametrize("rule", [{"threshold": 0.5}, {"keep_fraction": 0.3}])
@pytest.mark.parametrize("fill", ["zero", "mean", -1.0])
def test_pipeline_equals_transform_then_keep_mask(rule, fill):
    torch.manual_seed(0)
    images, saliency = torch.randn(6, 3, 24, 24), smooth_saliency(6, 24, seed=1)
    crop = K.RandomResizedCrop((20, 20), scale=(0.3, 1.0))
    flip = K.RandomHorizontalFlip()
    pipeline = K.AugmentationSequential(crop, flip, SaliencyKeep(fill=fill, **rule))
    out = pipeline(SaliencyKeep.stack(images, saliency))
    assert out.shape == (6, 3, 20, 20)

    # Reference: the same crop and flip parameters replayed on the image and on the map separately (the map
    # resampled bilinearly), then the plain keep_mask + apply_mask on the transformed image.
    crop_params, flip_params = (p.data for p in pipeline._params[:2])
    assert 0 < int(flip_params["batch_prob"].sum()) < 6, "the test needs flipped and unflipped samples"

    def geometry(x):
        shape = torch.tensor(x.shape)
        x = crop(x, params={**crop_params, "forward_input_shape": shape})
        return flip(x, params={**flip_params, "forward_input_shape": torch.tensor(x.shape)})

    moved_images, moved_saliency = geometry(images), geometry(saliency)
    expected = apply_mask(moved_images, keep_mask(moved_saliency, **rule), fill)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # The keep decision is taken after the geometry: thresholding first and moving the mask gives another result.
    if "threshold" in rule:
        moved_keep = geometry(keep_mask(saliency, **rule).float()) > 0.5
        assert not torch.equal(keep_mask(moved_saliency, **rule), moved_keep)


def test_saliency_is_resampled_bilinearly_like_the_image():
    """A linear ramp zoomed 2x stays strictly increasing under bilinear resampling; nearest resampling (kornia's
    default for "mask" keys) would repeat values in steps."""
    size = 32
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size).expand(4, 1, size, size).contiguous()
    images = torch.ones(4, 3, size, size)
    zoom = K.RandomResizedCrop((size, size), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    pipeline = K.AugmentationSequential(zoom, SaliencyKeep(threshold=0.5))
    torch.manual_seed(3)
    out = pipeline(SaliencyKeep.stack(images, ramp))
    params = pipeline._params[0].data
    moved = zoom(ramp, params={**params, "forward_input_shape": torch.tensor(ramp.shape)})
    assert torch.equal(out[:, :1] > 0.5, moved > 0.5)  # ones where kept, zeros elsewhere
    # bilinear: strictly increasing along x inside the crop (nearest would repeat values)
    assert (moved[..., 1:] - moved[..., :-1] > 0).all()


def test_other_mask_keys_follow_and_are_left_alone():
    torch.manual_seed(1)
    images, saliency = torch.randn(4, 3, 16, 16), smooth_saliency(4, 16, seed=2)
    segmentation = (torch.rand(4, 1, 16, 16) > 0.5).float()
    pipeline = K.AugmentationSequential(K.RandomHorizontalFlip(p=1.0), SaliencyKeep(), data_keys=["input", "mask"])
    out, mask = pipeline(SaliencyKeep.stack(images, saliency), segmentation)
    assert torch.equal(mask, segmentation.flip(-1))
    assert torch.equal(out, apply_mask(images.flip(-1), keep_mask(saliency.flip(-1))))


def test_supcon_colour_recipe_may_follow_in_the_same_pipeline():
    torch.manual_seed(4)
    images, saliency = torch.rand(4, 3, 24, 24), smooth_saliency(4, 24, seed=3)
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])
    pipeline = K.AugmentationSequential(
        K.RandomResizedCrop((16, 16), scale=(0.2, 1.0)), K.RandomHorizontalFlip(), SaliencyKeep(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0), K.Normalize(mean, std),
    )
    out = pipeline(SaliencyKeep.stack(images, saliency))
    jitter = pipeline._params[3].data
    assert out.shape == (4, 3, 16, 16)
    # Replaying the first three children, then the colour children with their parameters, gives the output.
    head = K.AugmentationSequential(*list(pipeline.children())[:3])
    kept = head(SaliencyKeep.stack(images, saliency), params=pipeline._params[:3])
    colour = list(pipeline.children())[3](kept, params=jitter)
    torch.testing.assert_close(out, (colour - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), rtol=0, atol=1e-5)


def test_keep_mask_input_and_noise_replay():
    torch.manual_seed(2)
    images = torch.randn(3, 3, 8, 8)
    keep = torch.rand(3, 1, 8, 8) > 0.5  # a given keep-mask works as a 0/1 saliency
    op = SaliencyKeep(fill="noise")
    first = op(SaliencyKeep.stack(images, keep))
    assert torch.equal(first[keep.expand_as(images)], images[keep.expand_as(images)])
    assert not torch.equal(first[~keep.expand_as(images)], torch.zeros_like(first[~keep.expand_as(images)]))
    replay = op(SaliencyKeep.stack(images, keep), params=op._params)
    assert torch.equal(replay, first)  # the noise is a drawn parameter


def test_errors():
    with pytest.raises(ValueError, match="threshold"):
        SaliencyKeep(threshold=2.0)
    with pytest.raises(ValueError, match="keep_fraction"):
        SaliencyKeep(keep_fraction=-0.1)
    with pytest.raises(ValueError, match="fill"):
        SaliencyKeep(fill="purple")
    with pytest.raises(ValueError, match=r"saliency must have shape \(B, 1, H, W\)"):
        SaliencyKeep.stack(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="images must be a floating point"):
        SaliencyKeep.stack(torch.zeros(2, 3, 8, 8, dtype=torch.long), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="extra last channel"):
        SaliencyKeep()(torch.rand(2, 1, 8, 8))
