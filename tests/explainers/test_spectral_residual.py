"""``spectral_residual`` against a direct NumPy transcription of Hou & Zhang's steps at OpenCV's 64x64 resolution."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import exaug
from exaug.explainers.spectral_residual import spectral_residual


def bilinear_np(img, out_h, out_w):
    """align_corners=False bilinear resize (OpenCV INTER_LINEAR / PyTorch), written out per output pixel."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), in_h - 1); y1 = min(y0 + 1, in_h - 1); fy = sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), in_w - 1); x1 = min(x0 + 1, in_w - 1); fx = sx - x0
            out[i, j] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                         + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
    return out


def filter_reflect101(img, kernel_1d):
    r = len(kernel_1d) // 2
    k2 = np.outer(kernel_1d, kernel_1d)
    padded = np.pad(img, r, mode="reflect")  # numpy "reflect" = OpenCV BORDER_REFLECT_101
    out = np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            out[i, j] = (padded[i:i + 2 * r + 1, j:j + 2 * r + 1] * k2).sum()
    return out


def reference(image_chw):
    grey = 0.299 * image_chw[0] + 0.587 * image_chw[1] + 0.114 * image_chw[2]
    small = bilinear_np(grey, 64, 64)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(1.0 + np.abs(spectrum))                          # log amplitude (OpenCV: log(1 + |F|))
    residual = log_amp - filter_reflect101(log_amp, np.full(3, 1 / 3))  # minus the 3x3 local mean
    back = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum))))  # inverse FFT, original phase
    x = np.arange(5) - 2.0
    gauss = np.exp(-x**2 / (2 * 8.0**2)); gauss /= gauss.sum()
    return filter_reflect101(back, gauss) ** 2                          # Gaussian smoothing, squared


def test_matches_numpy_transcription():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 40, 24, generator=g)
    images[1, :, 10:20, 5:15] += 1.0
    ours = spectral_residual(images).double().numpy()
    for i in range(2):
        ref = reference(images[i].double().numpy())
        np.testing.assert_allclose(ours[i, 0] / ours[i, 0].max(), ref / ref.max(), atol=2e-4)


def test_registered_model_free_and_resized_back():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    explainer = exaug.create_explainer("spectral_residual", model)
    images = torch.rand(2, 3, 32, 32)
    out = explainer.explain(images, torch.tensor([0, 1]))
    assert out.saliency.shape == (2, 1, 32, 32) and out.logits.shape == (2, 3)
    raw = spectral_residual(images)
    expected, _ = exaug.normalize_saliency(exaug.explainers.base.upsample_bilinear(raw, (32, 32)))
    torch.testing.assert_close(out.saliency, expected)


def test_mixing_source_is_model_free_and_equals_the_backend():
    from exaug.augment import SaliencySource

    images = torch.rand(2, 3, 24, 24)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 24 * 24, 3))
    direct, flat = SaliencySource("spectral_residual").maps(images, torch.tensor([0, 1]), None, None)
    backend = exaug.create_explainer("spectral_residual", model).explain(images, torch.tensor([0, 1]))
    torch.testing.assert_close(direct, backend.saliency)
    assert torch.equal(flat, backend.flat)
