"""Saliency grids of a training run as image tensors: what experiment trackers show every explaining epoch.

One column per image, three rows: the original, its saliency as a jet-coloured overlay, and the masked view
framed green (classified correctly: a positive) or red (wrong: dropped by ExCon, a background row in ExConB).
Torch only (no matplotlib), so TensorBoard's ``add_image``, ``wandb.Image`` and a PNG file all take the result;
:func:`exaug.evaluation.plot_saliency_grid` draws the titled figure of an evaluation.

Drawing a grid never changes training: it uses a copy of the run's augment without its saliency cache (the
cache's maps and hit counters stay as they were), fixed noise for ``fill="noise"`` and forked random generators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..augment import ExplanationMaskAugment
from ..transforms import unnormalize
from ..utils.checks import check_images, check_labels

__all__ = ["draw_saliency_grid", "jet", "saliency_grid_image", "save_png", "to_uint8_hwc"]

#: Frame colours of the masked views (RGB in [0, 1]): correct (positive), wrong (dropped / background).
GREEN = (0.1, 0.8, 0.1)
RED = (0.9, 0.1, 0.1)


def jet(values: Tensor) -> Tensor:
    """Matplotlib's ``jet`` colour map in closed form (piecewise linear ramps).

    Example:
        >>> import torch
        >>> jet(torch.tensor([[[[0.0, 1.0]]]]))[0, :, 0]  # blue at 0, red at 1
        tensor([[0.0000, 0.5000],
                [0.0000, 0.0000],
                [0.5000, 0.0000]])

    Shape:
        values: ``(N, 1, H, W)`` in ``[0, 1]``; returns ``(N, 3, H, W)``.
    """
    x = values.clamp(0, 1)
    # Each channel is a tent of height 1.5 clipped to [0, 1], centred at 3/4 (red), 1/2 (green), 1/4 (blue).
    return torch.cat([(1.5 - (4 * x - c).abs()).clamp(0, 1) for c in (3.0, 2.0, 1.0)], dim=1)


def saliency_grid_image(
    originals: Tensor, saliency: Tensor, masked: Tensor, correct: Tensor, *, alpha: float = 0.5, padding: int = 2
) -> Tensor:
    """The grid as one image: rows original / saliency overlay / masked view (framed by routing).

    Example:
        >>> import torch
        >>> image = saliency_grid_image(torch.rand(4, 3, 8, 8), torch.rand(4, 1, 8, 8), torch.rand(4, 3, 8, 8),
        ...                             torch.tensor([True, False, True, True]))
        >>> image.shape  # 3 rows of (8 + 2 * 2)-pixel cells, 4 columns
        torch.Size([3, 36, 48])

    Args:
        originals: pixels in ``[0, 1]`` (un-normalised).
        saliency: normalised maps in ``[0, 1]``.
        masked: masked views, pixels in ``[0, 1]``.
        correct: whether each masked view was classified as its label.
        alpha: weight of the colour map in the overlay.
        padding: frame width in pixels around every cell.

    Returns:
        ``(3, 3 * (H + 2 * padding), N * (W + 2 * padding))`` float image in ``[0, 1]``, on the inputs' device.

    Shape:
        originals, masked: ``(N, 3, H, W)``; saliency: ``(N, 1, H, W)``; correct: ``(N,)``.
    """
    originals, masked = check_images(originals, "originals"), check_images(masked, "masked")
    n, channels, height, width = originals.shape
    if channels != 3 or masked.shape != originals.shape:
        raise ValueError(f"originals and masked must both be (N, 3, H, W), got {tuple(originals.shape)} and "
                         f"{tuple(masked.shape)}")
    if saliency.shape != (n, 1, height, width):
        raise ValueError(f"saliency must be {(n, 1, height, width)}, got {tuple(saliency.shape)}")
    if correct.shape != (n,):
        raise ValueError(f"correct must be ({n},), got {tuple(correct.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    originals, masked = originals.clamp(0, 1).float(), masked.clamp(0, 1).float()
    overlay = torch.lerp(originals, jet(saliency.float()), alpha)
    colours = torch.tensor((RED, GREEN), device=originals.device)[correct.long()]  # (N, 3)
    white = torch.ones(n, 3, device=originals.device)

    def framed(images: Tensor, colour: Tensor) -> Tensor:
        # (N, 3, H, W) -> (3, H + 2p, N * (W + 2p)): cells side by side, each in a frame of its colour.
        cells = colour[:, :, None, None].expand(n, 3, height + 2 * padding, width + 2 * padding).clone()
        cells[:, :, padding:padding + height, padding:padding + width] = images
        return cells.permute(1, 2, 0, 3).reshape(3, height + 2 * padding, n * (width + 2 * padding))

    return torch.cat([framed(originals, white), framed(overlay, white), framed(masked, colours)], dim=1)


def draw_saliency_grid(
    augment: ExplanationMaskAugment,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """Explain, mask and route ``images`` as ``augment`` would, and return :func:`saliency_grid_image`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from exaug import ExplanationMaskAugment
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 3))
        >>> augment = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "1"})
        >>> draw_saliency_grid(augment, model, torch.randn(2, 3, 8, 8), torch.tensor([0, 2])).shape
        torch.Size([3, 36, 24])

    Args:
        augment: the run's augment; its explainer, masking rule and routing are used, its cache is not.
        model: images -> logits (encoder + classifier); left untouched.
        images: normalised standard views.
        labels: int64 class labels.
        mean: the per-channel mean of the normalisation of ``images``, undone for display; ``None``: each image
            is min-max scaled.
        std: the matching per-channel standard deviations.

    Returns:
        The grid image, ``(3, 3 * (H + 4), N * (W + 4))``, on the CPU.

    Shape:
        images: ``(N, 3, H, W)``; labels: ``(N,)``.
    """
    images = check_images(images, "images")
    labels = check_labels(labels, images.shape[0], "labels")
    # A cache-free twin: drawing through the run's cache would store maps and count hits.
    twin = ExplanationMaskAugment(augment.explainer, mode=augment.mode, threshold=augment.threshold,
                                  keep_fraction=augment.keep_fraction, fill=augment.fill, target=augment.target,
                                  explainer_options=augment.explainer_options)
    cuda = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # randomised explainers (RISE, ...) draw from the global RNG
        generator = torch.Generator(images.device).manual_seed(0)
        params = twin.draw(images, labels, model, generator=generator)

    def pixels(x: Tensor) -> Tensor:
        if mean is not None and std is not None:
            return unnormalize(x, mean, std)
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        return (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)

    grid = saliency_grid_image(pixels(images.detach()), params.saliency, pixels(params.masked), params.correct)
    return grid.cpu()


def to_uint8_hwc(image: Tensor) -> Tensor:
    """``(3, H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` uint8, what PNG writers and ``wandb.Image`` take."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a ``(3, H, W)`` image in ``[0, 1]`` as a PNG (parent folders created); returns the path.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> path = save_png(torch.rand(3, 4, 5), Path(tempfile.mkdtemp()) / "grid.png")
        >>> path.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_hwc(image.detach().cpu()).numpy()).save(path, format="PNG")
    return path
