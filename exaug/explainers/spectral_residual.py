"""Spectral residual saliency (Hou & Zhang, CVPR 2007): a model-free backend, batched in torch.

The steps follow OpenCV's ``StaticSaliencySpectralResidual`` (opencv_contrib ``saliency`` module), which fixes the
details the paper leaves open:

1. grey image: the ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` of a 3-channel image (the channel mean otherwise);
2. **resize to the 64x64 working resolution** (bilinear, ``align_corners=False``): the residual is a statement
   about the spectrum at a fixed coarse scale, so every input size is explained at 64x64 and the map is resized
   back to ``H x W`` (bilinear) at the end;
3. log amplitude ``L = log(1 + |FFT(I)|)`` (OpenCV adds 1 so a zero frequency does not give ``-inf``) and phase
   ``P = angle(FFT(I))``;
4. spectral residual ``R = L - h_3 * L`` with ``h_3`` the 3x3 mean filter (reflect-101 borders, OpenCV's default);
5. ``S = |IFFT(exp(R + iP))|``, smoothed by a 5x5 Gaussian of sigma 8 (reflect-101), then squared.

The map is per-sample min-max normalised by :class:`~exaug.explainers.Explainer` like every backend. It does not
depend on the model or the target; as a registered backend it still runs one no-grad forward (logits, target
checks), while :func:`spectral_residual` needs no model at all (the mixing augments call it without one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Explainer, upsample_bilinear
from .registry import register_explainer

__all__ = ["SpectralResidual", "spectral_residual", "WORKING_SIZE"]

#: OpenCV's working resolution (``resImWidth = resImHeight = 64``).
WORKING_SIZE = 64
LUMA = (0.299, 0.587, 0.114)


def _gaussian_kernel(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).to(dtype)


def _separable(maps: Tensor, kernel: Tensor) -> Tensor:
    """Filter ``(B, 1, h, w)`` maps with ``kernel`` along both axes, reflect-101 borders (OpenCV's default)."""
    r = kernel.numel() // 2
    out = F.conv2d(F.pad(maps, (r, r, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), kernel.view(1, 1, -1, 1))


def spectral_residual(
    images: Tensor, *, working_size: int = WORKING_SIZE, blur_size: int = 5, blur_sigma: float = 8.0
) -> Tensor:
    """Raw spectral residual maps of a batch, at the working resolution.

    Args:
        images: the batch (any value range: the map is scale-free after normalisation).
        working_size: side of the square resolution the spectrum is computed at (OpenCV: 64).
        blur_size: side of the final Gaussian kernel (OpenCV: 5).
        blur_sigma: its standard deviation in working pixels (OpenCV and the paper: 8).

    Returns:
        ``(B, 1, working_size, working_size)`` float32 maps, not normalised.

    Shape:
        - images: ``(B, C, H, W)``.
        - output: ``(B, 1, working_size, working_size)``.

    Example:
        >>> import torch
        >>> images = torch.zeros(1, 3, 32, 32)
        >>> images[..., 12:20, 12:20] = 1.0        # a bright square on a flat background
        >>> sal = spectral_residual(images)          # 64x64: the square spans rows/columns 24..39
        >>> sal.shape, divmod(int(sal.flatten().argmax()), 64)   # the peak lies on the square's border
        (torch.Size([1, 1, 64, 64]), (38, 39))
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if working_size < 4:
        raise ValueError(f"working_size must be >= 4, got {working_size}")
    if blur_size < 1 or blur_size % 2 == 0 or not blur_sigma > 0:
        raise ValueError(f"blur_size must be odd and positive and blur_sigma positive, got {blur_size}, {blur_sigma}")
    x = images.detach().float()
    if x.shape[1] == 3:
        grey = sum(w * x[:, c : c + 1] for c, w in enumerate(LUMA))
    else:
        grey = x.mean(dim=1, keepdim=True)
    small = upsample_bilinear(grey, (working_size, working_size))
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log1p(spectrum.abs())
    box = torch.full((3,), 1.0 / 3.0, device=x.device, dtype=x.dtype)
    residual = log_amplitude - _separable(log_amplitude, box)
    back = torch.fft.ifft2(torch.polar(torch.exp(residual), spectrum.angle())).abs()
    smooth = _separable(back, _gaussian_kernel(blur_size, blur_sigma, x.device, x.dtype))
    return smooth.square()


@register_explainer("spectral_residual")
class SpectralResidual(Explainer):
    """Spectral residual saliency (Hou & Zhang 2007): model-free, batched FFT at OpenCV's 64x64 resolution.

    Args:
        model: maps images to logits; only used when ``targets`` is ``None`` (to report the predicted classes).
        working_size: resolution of the spectrum (64 as OpenCV; the map is resized back to the image size).
        blur_size: side of the final Gaussian kernel (5 as OpenCV).
        blur_sigma: its standard deviation (8 as the paper and OpenCV).
    """

    description = "spectral residual (Hou & Zhang 2007): model-free FFT saliency at 64x64, as OpenCV's static saliency"

    def __init__(
        self, model: nn.Module, *, working_size: int = WORKING_SIZE, blur_size: int = 5, blur_sigma: float = 8.0
    ) -> None:
        super().__init__(model)
        if working_size < 4 or blur_size < 1 or blur_size % 2 == 0 or not math.isfinite(blur_sigma) or blur_sigma <= 0:
            raise ValueError("working_size must be >= 4, blur_size odd and positive, blur_sigma positive")
        self.working_size = int(working_size)
        self.blur_size = int(blur_size)
        self.blur_sigma = float(blur_sigma)

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        # The map ignores the model; one no-grad forward reports the logits and range-checks the targets (the
        # contract of every backend). Model-free callers use :func:`spectral_residual` directly.
        logits, targets = self._forward_logits(images, targets)
        raw = spectral_residual(images, working_size=self.working_size, blur_size=self.blur_size,
                                blur_sigma=self.blur_sigma)
        return raw, logits, targets

    def extra_repr(self) -> str:
        return f"working_size={self.working_size}, blur_size={self.blur_size}, blur_sigma={self.blur_sigma}"
