"""``SyntheticShapes``: a procedurally generated, offline image classification dataset with object masks.

Each image shows one shape whose identity is the class (circle, square, triangle, ...) at a random position,
scale, small rotation, aspect and colour, on a textured noisy background (a random base colour, smooth colour
blobs, a faint grating and pixel noise). The exact object mask is known, so saliency can be scored against it.
With ``spurious=True`` a coloured corner patch is added whose colour agrees with the class in the training split
with probability ``spurious_strength`` and is random in the test split (or, with ``test_cue="flipped"``, always
encodes another class than the label): a shortcut that a model can learn instead of the shape, and that
explanations should expose. ``mask_of="cue"`` makes the cue patch the ground-truth region instead of the object,
to measure how much saliency sits on the shortcut.

Every random number is a counter-based hash of ``(seed, split, index, stream, element)``, so image ``i`` depends
only on ``(seed, split, i)``, whatever ``num_samples`` is and in whichever order or batch it is rendered, and a
whole split is rendered with vectorised torch operations on chunks of images (no per-image Python loop).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SyntheticShapes", "SHAPE_NAMES", "render_shapes", "cue_region", "SYNTHETIC_MEAN", "SYNTHETIC_STD",
           "TEST_CUES", "MASK_REGIONS"]

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "diamond",
    "striped_blob",
    "x",
    "crescent",
    "frame",
    "star",
    "ellipse",
)

# Per-channel mean / std over all pixels of the default training split (seed 0, 5000 images, 32x32, no cue),
# measured once; other seeds and 64x64 images differ by less than 0.01.
SYNTHETIC_MEAN: tuple[float, float, float] = (0.444, 0.447, 0.446)
SYNTHETIC_STD: tuple[float, float, float] = (0.253, 0.254, 0.254)

_SPLITS = {"train": 1, "test": 2}
#: How the test split's cue picks its class (``test_cue``): uniformly among all classes, or among the others.
TEST_CUES: tuple[str, ...] = ("random", "flipped")
#: What ``SyntheticShapes.mask`` returns (``mask_of``): the object, or the spurious cue patch.
MASK_REGIONS: tuple[str, ...] = ("object", "cue")
_MASK32 = 0xFFFFFFFF
_DEFAULT_SIZES = {"train": 5000, "test": 1000}
# Images rendered per vectorised chunk (256 at 32x32): the int64 hash buffers (~6 MB) stay in cache, which
# makes generation about 2x faster than rendering 5000 images in one batch.
_PIXELS_PER_CHUNK = 1 << 18


def _mix(x: Tensor) -> Tensor:
    """32-bit integer hash (two xor-shift-multiply rounds) on int64 tensors holding values in ``[0, 2^32)``.

    The multiplier is below 2^27, so products stay below 2^59: no int64 overflow.
    """
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def _uniform(keys: Tensor, stream: int, *shape: int) -> Tensor:
    """``(B, *shape)`` float32 uniforms in ``[0, 1)``, a hash of (image key, stream id, element index).

    Args:
        keys: ``(B,)`` int64 per-image keys in ``[0, 2^32)``.
        stream: identifies what the numbers are for, so adding a stream never changes the others.
    """
    salt = _mix(torch.tensor(stream * 0x9E3779B1 & _MASK32))
    element = torch.arange(math.prod(shape), dtype=torch.int64) * 0x85EBCA6B
    h = _mix((keys[:, None] ^ salt) + element & _MASK32)
    # 24 high bits -> exactly representable float32 in [0, 1)
    return ((h >> 8).to(torch.float32) * (1.0 / (1 << 24))).view(-1, *shape)


# Columns of the per-image scalar parameter draw.
_P_POLARITY, _P_BG_VALUE, _P_BG_HUE, _P_BG_SAT, _P_ANGLE, _P_FREQ, _P_PHASE = range(7)
_P_RADIUS, _P_CX, _P_CY, _P_ROT, _P_ASPECT, _P_VALUE, _P_HUE, _P_SAT, _P_CUE_PICK, _P_CUE_OTHER = range(7, 17)
_NUM_SCALARS = 17
_STREAM_SCALARS, _STREAM_BLOBS, _STREAM_NOISE = 1, 2, 3


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """``(B,)`` hue, saturation, value in ``[0, 1]`` -> ``(B, 3)`` RGB."""
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n + h[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _radius(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v)


def _box(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs())


# Inside-shape tests in local coordinates (u right, v down, in units of the shape radius), one per class, in
# the order of SHAPE_NAMES. The striped blob's stripes are shading; its mask is the whole blob.
_SHAPES: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    lambda u, v: _radius(u, v) <= 1.0,  # circle
    lambda u, v: _box(u, v) <= 0.8,  # square
    lambda u, v: (v <= 0.75) & (u.abs() <= (v + 0.95) * 0.55),  # triangle, apex up
    lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 0.95)) | ((v.abs() <= 0.3) & (u.abs() <= 0.95)),  # cross
    lambda u, v: (_radius(u, v) <= 1.0) & (_radius(u, v) >= 0.55),  # ring
    lambda u, v: u.abs() + v.abs() <= 1.05,  # diamond
    lambda u, v: _radius(u, v) <= 1.0,  # striped blob
    lambda u, v: (((u - v).abs() <= 0.42) | ((u + v).abs() <= 0.42)) & (_box(u, v) <= 0.8),  # x
    lambda u, v: (_radius(u, v) <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.75**2),  # crescent
    lambda u, v: (_box(u, v) <= 0.9) & (_box(u, v) >= 0.55),  # frame
    lambda u, v: _radius(u, v) <= 0.55 + 0.4 * torch.cos(5.0 * torch.atan2(v, u)),  # five-pointed star
    lambda u, v: u * u + (v / 0.5) ** 2 <= 1.0,  # ellipse
)
_STRIPED = SHAPE_NAMES.index("striped_blob")


def _shape_masks(labels: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Inside-shape masks, each image tested only against its own class's shape.

    Args:
        labels: ``(B,)`` shape ids.
        u, v: ``(B, H, W)`` pixel coordinates relative to the shape centre, in units of its radius.

    Returns:
        ``(inside, shade)``: ``(B, H, W)`` bool mask and ``(B, H, W)`` brightness factor (stripes).
    """
    inside = torch.zeros_like(u, dtype=torch.bool)
    shade = torch.ones_like(u)
    for shape_id in labels.unique().tolist():
        sel = (labels == shape_id).nonzero().squeeze(1)
        inside[sel] = _SHAPES[shape_id](u[sel], v[sel])
        if shape_id == _STRIPED:
            shade[sel] = torch.where(torch.sin(u[sel] * 2.5 * math.pi) > 0, 0.35, 1.0)
    return inside, shade


def _cue_palette(num_classes: int) -> Tensor:
    """``(num_classes, 3)`` saturated colours with evenly spaced hues (one per class)."""
    hues = torch.arange(num_classes, dtype=torch.float32) / num_classes
    return _hsv_to_rgb(hues, torch.ones(num_classes), torch.ones(num_classes))


def _image_params(indices: Tensor, seed: int, split: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Per-image keys ``(B,)`` and the ``_NUM_SCALARS`` scalar parameters, each ``(B,)`` in ``[0, 1)``."""
    base = _mix(_mix(torch.tensor(seed & _MASK32)) ^ _SPLITS[split])
    keys = _mix(base + indices.to(torch.int64) * 0x9E3779B9 & _MASK32)
    return keys, _uniform(keys, _STREAM_SCALARS, _NUM_SCALARS).unbind(1)


def _cue_classes(
    params: tuple[Tensor, ...],
    labels: Tensor,
    split: str,
    num_classes: int,
    spurious_strength: float,
    test_cue: str = "random",
) -> Tensor:
    """Class encoded by the spurious patch, ``(B,)`` int64.

    Train: the label with probability ``spurious_strength``, otherwise another class chosen uniformly; test:
    uniform over all classes (uninformative), or with ``test_cue="flipped"`` uniform over the classes other
    than the label (misleading). The "other class" draw reads its own parameter column, which the random
    test cue never reads, so flipping the cue changes no other pixel of the image.
    """
    other = (labels + 1 + (params[_P_CUE_OTHER] * (num_classes - 1)).long().clamp(max=num_classes - 2)) % num_classes
    if split == "train":
        return torch.where(params[_P_CUE_PICK] < spurious_strength, labels, other)
    if test_cue == "flipped":
        return other
    return (params[_P_CUE_PICK] * num_classes).long().clamp(max=num_classes - 1)


def cue_region(image_size: int) -> Tensor:
    """Where the spurious cue is drawn: the top-left ``max(2, S // 8)`` square, as an ``(S, S)`` bool mask.

    Example:
        >>> cue_region(16).nonzero().max(0).values.tolist()  # a 2x2 patch at the top left
        [1, 1]

    Shape:
        - Output: ``(S, S)`` with ``S = image_size``.
    """
    patch = max(2, image_size // 8)
    corner = torch.zeros(image_size, image_size, dtype=torch.bool)
    corner[:patch, :patch] = True
    return corner


def render_shapes(
    indices: Tensor,
    *,
    seed: int,
    split: str,
    num_classes: int,
    image_size: int,
    spurious: bool = False,
    spurious_strength: float = 0.9,
    test_cue: str = "random",
    texture: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Render the images with the given indices (the pure function behind :class:`SyntheticShapes`).

    Args:
        indices: ``(B,)`` int64 image indices.
        seed: see :class:`SyntheticShapes`.
        split: see :class:`SyntheticShapes`.
        num_classes: see :class:`SyntheticShapes`.
        image_size: see :class:`SyntheticShapes`.
        spurious: see :class:`SyntheticShapes`.
        spurious_strength: see :class:`SyntheticShapes`.
        test_cue: see :class:`SyntheticShapes`.
        texture: see :class:`SyntheticShapes`.

    Returns:
        ``(images, masks, labels, cues)``: ``(B, 3, S, S)`` uint8 images, ``(B, 1, S, S)`` bool object masks,
        ``(B,)`` int64 labels (``index % num_classes``) and ``(B,)`` int64 cue classes (``-1`` without cue).
    """
    size = image_size
    labels = indices.to(torch.int64) % num_classes
    keys, p = _image_params(indices, seed, split)

    # Background: a desaturated base colour, smooth colour blobs (coarse noise upsampled), a faint grating of
    # random orientation and frequency, and pixel noise. Polarity: dark background and bright shape, or the
    # reverse, so that "brightest pixels" is not the object.
    dark_bg = p[_P_POLARITY] < 0.5
    bg_rgb = _hsv_to_rgb(
        p[_P_BG_HUE], 0.4 * p[_P_BG_SAT], torch.where(dark_bg, 0.15, 0.6) + 0.3 * p[_P_BG_VALUE]
    )
    blobs = F.interpolate(_uniform(keys, _STREAM_BLOBS, 3, 5, 5) - 0.5, size=(size, size), mode="bilinear")
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in (0, 1)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    angle = p[_P_ANGLE][:, None, None] * math.pi
    freq = 3.0 + 5.0 * p[_P_FREQ][:, None, None]
    phase = 2 * math.pi * p[_P_PHASE][:, None, None]
    grating = torch.sin(2 * math.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
    noise = _uniform(keys, _STREAM_NOISE, 3, size, size) - 0.5
    image = bg_rgb[:, :, None, None] + texture * (0.25 * blobs + 0.05 * grating[:, None] + 0.12 * noise)

    # Shape: class-specific geometry; position, radius, aspect and rotation (within +-20 degrees, so that a
    # square never looks like a diamond nor a cross like an x) are random.
    radius = size * (0.22 + 0.16 * p[_P_RADIUS][:, None, None])
    cx = radius + (size - 2 * radius) * p[_P_CX][:, None, None]
    cy = radius + (size - 2 * radius) * p[_P_CY][:, None, None]
    rot = (p[_P_ROT][:, None, None] - 0.5) * (2 * math.pi / 9)
    aspect = 0.85 + 0.3 * p[_P_ASPECT][:, None, None]
    dx = (xx * size - cx) / radius
    dy = (yy * size - cy) / radius
    u = (dx * torch.cos(rot) + dy * torch.sin(rot)) * aspect
    v = (dy * torch.cos(rot) - dx * torch.sin(rot)) / aspect
    inside, shade = _shape_masks(labels, u, v)
    shape_value = torch.where(dark_bg, 0.7, 0.15) + 0.3 * p[_P_VALUE]
    shape_rgb = _hsv_to_rgb(p[_P_HUE], 0.5 + 0.5 * p[_P_SAT], shape_value)
    shape_pixels = shape_rgb[:, :, None, None] * shade[:, None] + 0.06 * noise
    image = torch.where(inside[:, None], shape_pixels, image)

    cues = torch.full_like(labels, -1)
    if spurious:
        cues = _cue_classes(p, labels, split, num_classes, spurious_strength, test_cue)
        corner = cue_region(size)
        image = torch.where(corner, _cue_palette(num_classes)[cues][:, :, None, None], image)
        inside &= ~corner

    images = (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return images, inside[:, None], labels, cues


class SyntheticShapes(Dataset):
    """Offline, seedable image classification dataset of shapes on textured backgrounds.

    ``dataset[i]`` is ``(transform(image), label)``, or ``(transform(image), label, mask)`` with
    ``return_mask=True``; ``image`` is a float32 ``(3, S, S)`` tensor in ``[0, 1]`` (multiples of 1/255),
    ``label = i % num_classes`` (balanced classes), ``mask`` a ``(1, S, S)`` bool object mask (the cue patch
    with ``mask_of="cue"``). The transform
    only sees the image: apply geometric augmentations to images and masks together elsewhere (e.g. Kornia).

    Args:
        split: ``"train"`` or ``"test"`` (independent images; the spurious cue differs, see below).
        num_samples: images in the split; default 5000 for train, 1000 for test.
        num_classes: number of shape classes, 2 to ``len(SHAPE_NAMES)`` (12); default 10.
        image_size: side ``S`` in pixels (at least 8).
        seed: dataset seed; image ``i`` depends only on ``(seed, split, i)``.
        transform: applied to the ``(3, S, S)`` float image.
        return_mask: also return the object mask.
        spurious: add a coloured ``S/8`` corner patch whose colour encodes a class: the label with probability
            ``spurious_strength`` in train (otherwise another class), a uniformly random class in test. The
            patch is not part of the object mask.
        spurious_strength: train-split agreement probability of the cue, in ``[0, 1]``.
        test_cue: the test split's cue: ``"random"`` (a uniformly random class, the default) or ``"flipped"``
            (a uniformly random class other than the label, so the cue never agrees with it: accuracy on it
            measures how far a model ignores the shortcut). Either way the images are otherwise identical
            (same shapes, backgrounds and noise). The train split ignores it (its cue follows
            ``spurious_strength``), so one set of options can describe both splits of a run.
        mask_of: the region :meth:`mask` returns: ``"object"`` (the shape, default) or ``"cue"`` (the cue patch;
            needs ``spurious``), e.g. to score how much saliency sits on the shortcut with localisation metrics.
        texture: strength of the background's colour blobs, grating and pixel noise, in ``[0, 1]``: 1 (default)
            the textured background above, 0 a flat colour (an easier task, e.g. for ``exaug demo``).
        cache: render the whole split at construction and keep it (uint8 images and bool masks, ``4 S^2``
            bytes per image: 50k images of 32x32 take 205 MB); ``False`` renders each item on access instead
            (same pixels, no memory, ~1 ms per item).

    Attributes:
        classes: shape names of the classes.
        targets: ``(N,)`` int64 labels.
        cues: ``(N,)`` int64 class encoded by the spurious patch (``-1`` everywhere without ``spurious``).
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        *,
        num_classes: int = 10,
        image_size: int = 32,
        seed: int = 0,
        transform: Callable[[Tensor], Any] | None = None,
        return_mask: bool = False,
        spurious: bool = False,
        spurious_strength: float = 0.9,
        test_cue: str = "random",
        mask_of: str = "object",
        texture: float = 1.0,
        cache: bool = True,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        if num_samples is None:
            num_samples = _DEFAULT_SIZES[split]
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative int, got {num_samples!r}")
        if not isinstance(num_classes, int) or not 2 <= num_classes <= len(SHAPE_NAMES):
            raise ValueError(f"num_classes must be an int in [2, {len(SHAPE_NAMES)}], got {num_classes!r}")
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not 0.0 <= spurious_strength <= 1.0:
            raise ValueError(f"spurious_strength must be a probability in [0, 1], got {spurious_strength!r}")
        if test_cue not in TEST_CUES:
            raise ValueError(f"test_cue must be one of {', '.join(TEST_CUES)}, got {test_cue!r}")
        if mask_of not in MASK_REGIONS:
            raise ValueError(f"mask_of must be one of {', '.join(MASK_REGIONS)}, got {mask_of!r}")
        if isinstance(texture, bool) or not isinstance(texture, (int, float)) or not 0.0 <= texture <= 1.0:
            raise ValueError(f"texture must be a number in [0, 1], got {texture!r}")
        if mask_of == "cue" and not spurious:
            raise ValueError("mask_of='cue' needs spurious=True: without the cue there is no cue patch")
        self.split = split
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = int(seed)
        self.transform = transform
        self.return_mask = return_mask
        self.spurious = spurious
        self.spurious_strength = float(spurious_strength)
        self.test_cue = test_cue
        self.mask_of = mask_of
        self.texture = float(texture)
        self.classes = list(SHAPE_NAMES[:num_classes])
        self.targets = torch.arange(num_samples, dtype=torch.int64) % num_classes
        self._images: Tensor | None = None
        self._masks: Tensor | None = None
        if cache:
            self._images, self._masks, self.cues = self.render(torch.arange(num_samples))
        else:
            self.cues = self._render_cues()

    def _render_cues(self) -> Tensor:
        if not self.spurious:
            return torch.full((self.num_samples,), -1, dtype=torch.int64)
        _, params = _image_params(torch.arange(self.num_samples), self.seed, self.split)
        return _cue_classes(params, self.targets, self.split, self.num_classes, self.spurious_strength,
                            self.test_cue)

    def render(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Render images ``indices`` ``(B,)`` from scratch (ignores the cache), in cache-sized chunks.

        Returns:
            ``(images, masks, cues)``: ``(B, 3, S, S)`` uint8, ``(B, 1, S, S)`` bool, ``(B,)`` int64.
        """
        chunk = max(1, _PIXELS_PER_CHUNK // (self.image_size * self.image_size))
        parts = [
            render_shapes(
                indices[i : i + chunk],
                seed=self.seed,
                split=self.split,
                num_classes=self.num_classes,
                image_size=self.image_size,
                spurious=self.spurious,
                spurious_strength=self.spurious_strength,
                test_cue=self.test_cue,
                texture=self.texture,
            )
            for i in range(0, max(indices.numel(), 1), chunk)
        ]
        images, masks, _, cues = (torch.cat(part) for part in zip(*parts))
        return images, masks, cues

    def _check_index(self, index: int) -> int:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} images")
        return index % self.num_samples

    def image(self, index: int) -> Tensor:
        """Un-transformed image ``index``: ``(3, S, S)`` float32 in ``[0, 1]``."""
        index = self._check_index(index)
        pixels = self._images[index] if self._images is not None else self.render(torch.tensor([index]))[0][0]
        return pixels.to(torch.float32) / 255.0

    def mask(self, index: int) -> Tensor:
        """Object mask of image ``index`` (the cue patch with ``mask_of="cue"``): ``(1, S, S)`` bool."""
        index = self._check_index(index)
        if self.mask_of == "cue":
            return cue_region(self.image_size)[None]  # the same square in every image
        return self._masks[index] if self._masks is not None else self.render(torch.tensor([index]))[1][0]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Any, int] | tuple[Any, int, Tensor]:
        image = self.image(index)
        label = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.return_mask:
            return image, label, self.mask(index)
        return image, label

    def __repr__(self) -> str:
        cue = f", spurious_strength={self.spurious_strength}" if self.spurious else ""
        if self.spurious and self.test_cue != "random":
            cue += f", test_cue={self.test_cue!r}"
        if self.mask_of != "object":
            cue += f", mask_of={self.mask_of!r}"
        return (
            f"{type(self).__name__}(split={self.split!r}, num_samples={self.num_samples}, "
            f"num_classes={self.num_classes}, image_size={self.image_size}, seed={self.seed}{cue})"
        )
