from __future__ import annotations

import kornia
import pytest
import torch

from exaug.augment import apply_mask, fill_like, gaussian_blur, keep_mask


def test_threshold_rule_is_strictly_greater():
    sal = torch.tensor([0.0, 0.5, 0.50001, 1.0]).view(1, 1, 2, 2)
    assert keep_mask(sal, threshold=0.5).view(-1).tolist() == [False, False, True, True]


@pytest.mark.parametrize("q", [0.0, 0.15, 0.3, 0.45, 1.0])
def test_keep_fraction_keeps_exact_count_of_most_salient(q):
    g = torch.Generator().manual_seed(0)
    sal = torch.rand(5, 1, 8, 8, generator=g)
    keep = keep_mask(sal, keep_fraction=q)
    k = round(q * 64)
    assert keep.flatten(1).sum(1).tolist() == [k] * 5
    for i in range(5):  # naive reference: the k largest values
        ref = torch.zeros(64, dtype=torch.bool)
        ref[sal[i].flatten().argsort(descending=True)[:k]] = True
        assert torch.equal(keep[i].flatten(), ref)


def test_flat_samples_keep_nothing_even_with_keep_fraction():
    sal = torch.zeros(2, 1, 4, 4)
    flat = torch.tensor([True, False])
    keep = keep_mask(sal, keep_fraction=0.5, flat=flat)
    assert not keep[0].any() and keep[1].sum() == 8


def test_bad_rules():
    with pytest.raises(ValueError, match="keep_fraction"):
        keep_mask(torch.zeros(1, 1, 2, 2), keep_fraction=1.5)
    with pytest.raises(ValueError, match="threshold"):
        keep_mask(torch.zeros(1, 1, 2, 2), threshold=-0.1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        keep_mask(torch.zeros(1, 3, 2, 2))


def test_fills():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=g)
    keep = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    keep[..., :4, :] = True
    zero = apply_mask(x, keep, "zero")
    assert torch.all(zero[..., 4:, :] == 0) and torch.equal(zero[..., :4, :], x[..., :4, :])
    mean = apply_mask(x, keep, "mean")
    torch.testing.assert_close(mean[..., 4:, :], x.mean((2, 3), keepdim=True).expand(3, 3, 4, 8))
    assert fill_like(x, 2.0).item() == 2.0
    with pytest.raises(ValueError, match="fill"):
        fill_like(x, "grey")


def test_blur_matches_kornia_on_small_images_and_keeps_constants():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    ref = kornia.filters.gaussian_blur2d(x, (21, 21), (5.0, 5.0), border_type="reflect")
    torch.testing.assert_close(gaussian_blur(x), ref)
    const = torch.full((1, 3, 128, 96), 0.3)  # the downsampled path must preserve a constant image
    torch.testing.assert_close(gaussian_blur(const), const)
    big = torch.rand(1, 3, 128, 128, generator=g)
    assert gaussian_blur(big).std() < big.std() / 4  # it really blurs
