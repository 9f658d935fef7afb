"""Blur and baselines in their neutral home: equal to kornia / the formulas, shared by augment and explainers."""

from __future__ import annotations

import pytest
import torch

import exaug
from exaug.utils.images import BASELINES, check_baseline, gaussian_blur, make_baseline


def test_one_blur_everywhere():
    from exaug.augment import masking
    from exaug.explainers import captum_backends

    assert exaug.augment.gaussian_blur is masking.gaussian_blur is gaussian_blur
    assert captum_backends.make_baseline is make_baseline and captum_backends.BASELINES is BASELINES


@pytest.mark.parametrize("size", [16, 40])
def test_gaussian_blur_small_images_equal_kornia(size):
    import kornia

    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    k = min(21, 2 * size - 1)
    torch.testing.assert_close(gaussian_blur(x), kornia.filters.gaussian_blur2d(x, (k, k), (5.0, 5.0), "reflect"))


def test_gaussian_blur_large_images_downsample_and_stay_close_to_the_full_blur():
    import kornia

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    x = kornia.filters.gaussian_blur2d(x, (9, 9), (2.0, 2.0), "reflect")  # smooth content: comparable blurs
    full = kornia.filters.gaussian_blur2d(x, (21, 21), (5.0, 5.0), "reflect")
    fast = gaussian_blur(x)
    assert fast.shape == x.shape
    assert (fast - full).abs().mean() < 0.02 * x.std()


def test_make_baseline_formulas():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.equal(make_baseline(x, "zero"), torch.zeros_like(x))
    torch.testing.assert_close(make_baseline(x, "blur"), gaussian_blur(x.detach()))
    assert torch.equal(make_baseline(x, -0.5), torch.full_like(x, -0.5))
    assert not make_baseline(x, "blur").requires_grad
    one = torch.randn(2, 8, 8)
    out = make_baseline(x, one)
    assert out.dtype == torch.float64 and all(torch.equal(row, one.double()) for row in out)
    per_sample = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    assert torch.equal(make_baseline(x, per_sample), per_sample)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 8, 8), torch.zeros(3, 8, 8), torch.zeros(8, 8)])
def test_make_baseline_rejects_wrong_tensor_shapes(bad):
    with pytest.raises(ValueError, match=r"baseline tensor must have shape \(C, H, W\)"):
        make_baseline(torch.zeros(3, 2, 8, 8), bad)


def test_check_baseline():
    assert check_baseline("zero") == "zero" and check_baseline(0.5) == 0.5
    t = torch.zeros(1)
    assert check_baseline(t) is t
    assert check_baseline("zero+blur", "baselines", extra=("zero+blur",)) == "zero+blur"
    for bad in ("mean", True, None, "zero+blur"):
        with pytest.raises(ValueError, match="baseline must be one of"):
            check_baseline(bad)
    with pytest.raises(ValueError, match=r"^baselines must be one of \('zero', 'blur', 'zero\+blur'\)"):
        check_baseline("noise", "baselines", extra=("zero+blur",))
