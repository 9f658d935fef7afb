"""``SaliencyCache``: the saliency map of every image of a fixed, indexed dataset, recomputed every k epochs.

:class:`~exaug.ExplanationMaskAugment` explains the *standard* (un-augmented) view of each training image. That
input is the same in every epoch, so its map only changes as fast as the model does: recomputing it every
``refresh_every`` epochs instead of at every batch divides the explainer cost by about that factor, which makes
expensive explainers (Integrated Gradients, SmoothGrad, RISE: 15-180 forwards per batch) affordable in training.
The price is staleness: a map may come from the model of up to ``refresh_every - 1`` epochs earlier, while the
ExCon paper explains every batch with the current model.

Compact storage: with ``map_size="native"`` the cache keeps each map at the explainer's native resolution (a
16x16 Grad-CAM layer map rather than 32x32 or 224x224 pixels: :attr:`Explanation.raw
<exaug.explainers.Explanation>`) and upsamples + normalises it on read exactly as :meth:`Explainer.explain
<exaug.explainers.Explainer.explain>` does, so a float32 cache serves bit for bit the map a fresh call would
give; ``uint8`` / ``float16`` storage trades a bounded rounding of the map (see :class:`SaliencyCache`) for 4x /
2x less memory. The cache may live on the host while training on a GPU: reads gather into pinned memory and copy
without blocking, then decode on the training device.

The cache is an ``nn.Module`` whose maps, flat flags and epoch stamps are registered buffers: ``cache.to(device)``
moves them and ``cache.state_dict()`` saves them (with the current epoch and the hit/miss counters as extra
state), so a run resumed from a checkpoint serves exactly the maps, and judges staleness exactly as, the run
that saved it.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..explainers.base import Explainer, normalize_saliency, upsample_bilinear
from ..utils.checks import check_indices, positive_int
from .explaining import SaliencyFn, explain_normalized

__all__ = ["SaliencyCache", "native_map_size"]


#: ``compute(rows)`` -> ``(saliency (R, 1, H, W), flat (R,), raw (R, 1, h, w) or None)`` for the batch rows
#: ``rows`` (``None``: every row); ``raw`` is :attr:`Explanation.raw <exaug.explainers.Explanation>`.
ComputeFn = Callable[[Tensor | None], tuple[Tensor, Tensor, Tensor | None]]

#: Storage dtypes that hold a float32 native map exactly (the others store it min-max normalised per sample).
EXACT_DTYPES = (torch.float32, torch.float64)
#: ``uint8`` storage: a value ``v`` in ``[0, 1]`` is stored as ``round(v * 255)``.
UINT8_LEVELS = 255.0


class SaliencyCache(nn.Module):
    """Per-sample saliency maps with the epoch they were computed at (one slot per dataset index).

    The owner calls :meth:`set_epoch` at the start of every epoch (like ``DistributedSampler.set_epoch``); a map
    computed at epoch ``e`` is served through epoch ``e + refresh_every - 1`` and is stale from ``e +
    refresh_every`` on. :class:`~exaug.ExplanationMaskAugment` with ``cache=`` does the bookkeeping: it explains
    only the stale rows of each batch and stores their maps (:meth:`serve`).

    What is stored: maps of the image size (``map_size=None``, or a pixel-resolution explainer) are the
    normalised saliency, served as stored. Smaller maps (``map_size="native"`` with a layer explainer) are the
    explainer's native maps, served as ``normalize_saliency(upsample_bilinear(map, image_size))``: the very
    operations of :meth:`~exaug.explainers.Explainer.explain`, so with float32 (or float64) storage a cached map
    equals the fresh one bit for bit. ``float16`` / ``bfloat16`` / ``uint8`` store the native map min-max
    normalised per sample (the final normalisation is affine invariant) and round it: within 2^-12 / 2^-9 /
    1/510 of its range before upsampling, so served values differ from fresh ones by at most that step divided
    by the range the upsampled map keeps (keep-masks can only differ at pixels that close to the threshold).

    Checkpoints: ``cache.state_dict()`` holds ``maps``, ``flat``, ``epoch_computed`` and ``_extra_state``
    (``{"epoch", "hits", "misses"}``); ``load_state_dict`` into a cache of the same ``num_samples``, storage
    dtype and map size (a ``"native"`` cache that stored nothing yet takes the checkpoint's) restores all of them
    (staleness is then judged with the loading cache's ``refresh_every``).

    Example:
        >>> import torch
        >>> cache = SaliencyCache(100, 8, refresh_every=3)
        >>> idx = torch.tensor([4, 7])
        >>> cache.put(idx, torch.rand(2, 1, 8, 8), torch.tensor([False, False]))
        >>> cache.set_epoch(2)
        >>> cache.stale(idx).tolist()       # computed at epoch 0, served through epoch 2
        [False, False]
        >>> resumed = SaliencyCache(100, 8, refresh_every=3)
        >>> resumed.load_state_dict(cache.state_dict())
        <All keys matched successfully>
        >>> resumed.epoch, torch.equal(resumed.maps, cache.maps)
        (2, True)

        Native maps (a Grad-CAM layer at half the image resolution), stored in float32, serve the fresh map:

        >>> from torch import nn
        >>> from exaug import create_explainer
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(4, 3))
        >>> fresh = create_explainer("gradcam", model, target_layer="1").explain(torch.randn(2, 3, 8, 8))
        >>> native = SaliencyCache(100, 8, dtype=torch.float32, map_size="native")
        >>> native.put(idx, fresh.raw, fresh.flat)
        >>> native.map_size, native.maps.shape
        ((4, 4), torch.Size([100, 1, 4, 4]))
        >>> torch.equal(native.get(idx)[0], fresh.saliency)
        True

    Args:
        num_samples: ``N``, the size of the indexed dataset; indices lie in ``[0, N)``.
        image_size: ``H`` (square maps) or ``(H, W)``: the size of the explained images.
        refresh_every: ``k``, the number of epochs a map serves (computed at ``e``, recomputed at ``e + k``; 1:
            every epoch).
        dtype: storage dtype: a floating dtype or ``torch.uint8``. Per image, ``h * w`` times 4 (float32), 2
            (float16, bfloat16) or 1 (uint8) bytes, plus 9 bytes of flags and stamps (``memory_bytes``).
        device: where the buffers live (default: the CPU). The training device avoids a copy per batch; the CPU
            (host) holds larger datasets and, with CUDA, serves through pinned memory and non-blocking copies.
            ``cache.to(device)`` moves the buffers later.
        map_size: the size of the stored maps: ``None`` (the image size), ``"native"`` (the size of the first
            maps stored: the explainer's native resolution when :meth:`serve` is given it), or ``h`` / ``(h, w)``.

    Attributes:
        maps: buffer, the stored maps (``dtype``); rows never computed hold zeros.
        flat: buffer, bool, maps that carried no information (see :func:`~exaug.explainers.normalize_saliency`).
        epoch_computed: buffer, int64, the epoch each map was computed at, -1 for never.
        epoch: the current epoch (set by :meth:`set_epoch`).
        hits: rows served by :meth:`get` since creation or :meth:`reset` (a Python int: no host sync).
        misses: rows (re)computed, i.e. written by :meth:`put`.

    Shape:
        - maps: ``(N, 1, h, w)`` (``(N, 1, 0, 0)`` while a ``"native"`` cache has stored nothing).
        - flat, epoch_computed: ``(N,)``.
    """

    maps: Tensor
    flat: Tensor
    epoch_computed: Tensor

    def __init__(
        self,
        num_samples: int,
        image_size: int | tuple[int, int],
        refresh_every: int = 2,
        dtype: torch.dtype = torch.float16,
        device: torch.device | str | None = None,
        map_size: int | tuple[int, int] | str | None = None,
    ) -> None:
        super().__init__()
        self.num_samples = positive_int("num_samples", num_samples)
        self.refresh_every = positive_int("refresh_every", refresh_every)
        self.image_size = _image_size(image_size)
        if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype == torch.uint8):
            raise TypeError(f"dtype must be a floating point torch.dtype or torch.uint8 (e.g. torch.float16), "
                            f"got {dtype!r}")
        if map_size == "native":
            size: tuple[int, int] = (0, 0)  # allocated by the first put (or a checkpoint)
        else:
            size = self.image_size if map_size is None else _image_size(map_size, "map_size")
        self.native = map_size == "native"
        device = torch.device("cpu") if device is None else torch.device(device)
        self.register_buffer("maps", torch.zeros((self.num_samples, 1, *size), dtype=dtype, device=device))
        self.register_buffer("flat", torch.zeros(self.num_samples, dtype=torch.bool, device=device))
        self.register_buffer("epoch_computed", torch.full((self.num_samples,), -1, dtype=torch.long, device=device))
        self.epoch = 0
        self.hits = 0
        self.misses = 0

    # -- epochs -----------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Set the current epoch (call at the start of every epoch); maps are stamped with it by :meth:`put`."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def stale(self, indices: Tensor) -> Tensor:
        """Which of ``indices`` need a (re)computed map.

        Args:
            indices: ``(B,)`` integer dataset indices in ``[0, N)`` (on any device; range-checked with one host
                sync).

        Returns:
            ``(B,)`` bool on the cache's device: never computed, computed ``refresh_every`` or more epochs ago,
            or stamped with a later epoch than the current one (:meth:`set_epoch` went back, e.g. a new run).
        """
        indices = self._indices(indices, check_range=True)
        computed = self.epoch_computed.index_select(0, indices)
        age = self.epoch - computed
        return (computed < 0) | (age < 0) | (age >= self.refresh_every)

    # -- storage ----------------------------------------------------------------------------------------------
    def get(
        self, indices: Tensor, *, check_range: bool = True, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """The served maps of ``indices``, whether or not they are stale (check :meth:`stale` first).

        Args:
            indices: ``(B,)`` integer dataset indices in ``[0, N)``.
            check_range: range-check ``indices`` (one host sync); skip it for indices :meth:`stale` has checked.
            device: where to decode and return the maps (default: the cache's device). From a host cache to
                CUDA the stored rows are gathered into pinned memory and copied without blocking.

        Returns:
            ``(maps, flat)``: ``(B, 1, H, W)`` float32 normalised maps and ``(B,)`` bool.
        """
        indices = self._indices(indices, check_range=check_range)
        self.hits += indices.shape[0]
        device = self.device if device is None else torch.device(device)
        # Pinned staging makes the host-to-device copy asynchronous; a gather never lands in pinned memory
        # by itself, so pinning the whole cache would lock host RAM for nothing.
        pin = self.device.type == "cpu" and device.type == "cuda"
        stored = torch.empty((indices.shape[0], *self.maps.shape[1:]), dtype=self.dtype, pin_memory=pin)
        flat = torch.empty(indices.shape[0], dtype=torch.bool, pin_memory=pin)
        torch.index_select(self.maps, 0, indices, out=stored)
        torch.index_select(self.flat, 0, indices, out=flat)
        return self._decode(stored.to(device, non_blocking=pin), flat.to(device, non_blocking=pin))

    def put(self, indices: Tensor, maps: Tensor, flat: Tensor, *, check_range: bool = True) -> None:
        """Store freshly computed maps of ``indices``, stamped with the current epoch.

        Args:
            indices: ``(B,)`` integer dataset indices in ``[0, N)``; if one appears twice, either row is kept.
            maps: ``(B, 1, h, w)`` floating maps of :attr:`map_size`: normalised to ``[0, 1]`` when that is the
                image size, else native maps of any scale (:attr:`Explanation.raw
                <exaug.explainers.Explanation>`). A ``"native"`` cache that stored nothing yet takes their size.
            flat: ``(B,)`` bool flat flags.
            check_range: range-check ``indices`` (one host sync); skip it for indices :meth:`stale` has checked.
        """
        indices = self._indices(indices, check_range=check_range)
        b = indices.shape[0]
        size = self.map_size
        if (size is None and isinstance(maps, Tensor) and maps.dim() == 4 and maps.shape[:2] == (b, 1)
                and maps.shape[-1] * maps.shape[-2] > 0):
            size = self._allocate(tuple(maps.shape[-2:]))
        expected = (b, 1, *(size or ("h", "w")))
        if not isinstance(maps, Tensor) or tuple(maps.shape) != expected or not maps.is_floating_point():
            shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise ValueError(f"maps must be floating point of shape (B, 1, H, W) = {expected}, got {shape}")
        if not isinstance(flat, Tensor) or flat.dtype != torch.bool or flat.shape != (b,):
            desc = f"{flat.dtype} {tuple(flat.shape)}" if isinstance(flat, Tensor) else type(flat).__name__
            raise ValueError(f"flat must be a bool tensor of shape ({b},), got {desc}")
        self.maps.index_copy_(0, indices, self._encode(maps.detach(), flat))
        self.flat.index_copy_(0, indices, flat.to(self.device))
        self.epoch_computed.index_fill_(0, indices, self.epoch)
        self.misses += b

    def serve(self, indices: Tensor, compute: ComputeFn, device: torch.device) -> tuple[Tensor, Tensor, bool]:
        """Maps of a batch: stored ones for fresh rows, ``compute`` for the stale rows only (then stored).

        The rows just computed carry their fresh float32 maps (so a batch of stale rows gives exactly the
        uncached result), the others the stored ones. Host syncs: the index range check and the number of stale
        rows.

        Args:
            indices: dataset indices of the batch rows, in ``[0, N)``.
            compute: ``compute(rows)`` returns ``(saliency, flat, raw)`` for the batch rows ``rows`` (an int64
                tensor of positions in the batch, increasing), or for every row when ``rows`` is ``None``;
                ``raw`` (the native maps, or ``None``) is stored instead of ``saliency`` when it is smaller than
                the image and the cache stores native maps.
            device: where the returned maps go (the batch's device).

        Returns:
            ``(maps, flat, computed_all)``: ``computed_all`` is True when every row was computed.

        Shape:
            - indices: ``(B,)``.
            - maps: ``(B, 1, H, W)`` float32; flat: ``(B,)`` bool.
        """
        stale = self.stale(indices).to(device)  # range-checks the indices: one host sync
        # One host sync: the number of stale rows fixes the size of the computed batch.
        stale_rows = stale.nonzero().squeeze(1)
        b, k = stale.shape[0], stale_rows.shape[0]
        if k == b:
            maps, flat, raw = compute(None)
            self._store(indices, maps, flat, raw)
            return maps, flat, True
        # The other rows in increasing order without another sync: a stable sort puts the b - k fresh rows first.
        fresh_rows = torch.argsort(stale.to(torch.uint8), stable=True)[: b - k]
        indices = indices.to(device)
        cached, cached_flat = self.get(indices.index_select(0, fresh_rows), check_range=False, device=device)
        if k == 0:
            return cached, cached_flat, False
        fresh, fresh_flat, fresh_raw = compute(stale_rows)
        self._store(indices.index_select(0, stale_rows), fresh, fresh_flat, fresh_raw)
        maps = fresh.new_empty((b, *fresh.shape[1:]))
        maps.index_copy_(0, stale_rows, fresh).index_copy_(0, fresh_rows, cached)
        flat = fresh_flat.new_empty(b)
        flat.index_copy_(0, stale_rows, fresh_flat).index_copy_(0, fresh_rows, cached_flat)
        return maps, flat, False

    def reset(self) -> None:
        """Mark every map as never computed and zero the counters (the current epoch and map size are kept)."""
        self.epoch_computed.fill_(-1)
        self.flat.zero_()
        self.hits = 0
        self.misses = 0

    # -- bookkeeping ------------------------------------------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``: the fraction of looked-up rows served from the cache (0.0 before any)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the buffers (maps, flat flags and epochs)."""
        return sum(t.numel() * t.element_size() for t in (self.maps, self.flat, self.epoch_computed))

    @property
    def map_size(self) -> tuple[int, int] | None:
        """``(h, w)`` of the stored maps; ``None`` while a ``"native"`` cache has stored nothing."""
        h, w = self.maps.shape[-2:]
        return (h, w) if h * w > 0 else None

    @property
    def upsamples(self) -> bool:
        """Whether stored maps are native maps, upsampled and normalised on read."""
        return self.map_size is not None and self.map_size != self.image_size

    @property
    def device(self) -> torch.device:
        return self.maps.device

    @property
    def dtype(self) -> torch.dtype:
        return self.maps.dtype

    def __len__(self) -> int:
        return self.num_samples

    # -- encoding ---------------------------------------------------------------------------------------------
    def _store(self, indices: Tensor, saliency: Tensor, flat: Tensor, raw: Tensor | None) -> None:
        """Put the native maps ``raw`` when this cache stores them, else the normalised ``saliency``."""
        size = self.map_size
        raw_size = None if raw is None else tuple(raw.shape[-2:])
        wants_native = size != self.image_size and (self.native or size is not None)
        if raw_size is not None and raw_size != self.image_size and wants_native:
            if size is not None and raw_size != size:
                raise ValueError(f"the cache stores {size[0]}x{size[1]} native maps, the explainer returned "
                                 f"{raw_size[0]}x{raw_size[1]}")
            self.put(indices, raw, flat, check_range=False)
        elif size is not None and size != self.image_size:
            raise ValueError(f"the cache stores {size[0]}x{size[1]} native maps but the explainer gave none "
                             f"(only {self.image_size[0]}x{self.image_size[1]} saliency); use map_size=None")
        else:
            self.put(indices, saliency, flat, check_range=False)

    def _allocate(self, size: tuple[int, int]) -> tuple[int, int]:
        self.maps = torch.zeros((self.num_samples, 1, *size), dtype=self.dtype, device=self.device)
        return size

    def _encode(self, maps: Tensor, flat: Tensor) -> Tensor:
        """Stored form of ``maps`` (encoded on their device, so a host cache receives the compact rows)."""
        if self.upsamples and self.dtype not in EXACT_DTYPES:
            # Rounding needs a known range; min-max normalisation here does not change the served map (the final
            # normalisation is affine invariant), and a flat row becomes zeros, which decode as flat again.
            maps = normalize_saliency(maps.float())[0].masked_fill_(flat.view(-1, 1, 1, 1), 0.0)
        if self.dtype == torch.uint8:
            maps = (maps.float() * UINT8_LEVELS).round_().clamp_(0.0, UINT8_LEVELS)
        return maps.to(self.device, self.dtype)

    def _decode(self, stored: Tensor, flat: Tensor) -> tuple[Tensor, Tensor]:
        maps = stored.float()
        if self.dtype == torch.uint8:
            maps = maps.div_(UINT8_LEVELS)
        if not self.upsamples:
            return maps, flat
        # Exactly Explainer.explain: bilinear upsampling of the float32 native map, then min-max normalisation.
        maps, decoded_flat = normalize_saliency(upsample_bilinear(maps, self.image_size))
        return maps.masked_fill_(flat.view(-1, 1, 1, 1), 0.0), flat | decoded_flat

    # -- checkpoints ------------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, int]:
        """The Python state saved next to the buffers by ``state_dict()``."""
        return {"epoch": self.epoch, "hits": self.hits, "misses": self.misses}

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`get_extra_state` (called by ``load_state_dict``)."""
        if not isinstance(state, dict) or set(state) != {"epoch", "hits", "misses"}:
            raise ValueError(f"SaliencyCache extra state must be a dict with keys epoch, hits, misses, got {state!r}")
        self.set_epoch(state["epoch"])
        self.hits, self.misses = int(state["hits"]), int(state["misses"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        maps = state_dict.get(prefix + "maps")
        if isinstance(maps, Tensor):
            if maps.dtype != self.dtype:
                # copy_ would cast silently: float16 normalised maps read as uint8 levels, raw maps as rounded.
                error_msgs = args[-1]
                error_msgs.append(f"the checkpoint's saliency cache stores {maps.dtype} maps, this one {self.dtype}"
                                  f" (build it with dtype={maps.dtype})")
                return
            if self.native and self.map_size is None and maps.dim() == 4 and maps.shape[-1] * maps.shape[-2] > 0:
                self._allocate(tuple(maps.shape[-2:]))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        h, w = self.image_size
        size = "native (not yet known)" if self.map_size is None else self.map_size
        return (f"num_samples={self.num_samples}, image_size=({h}, {w}), map_size={size}, "
                f"refresh_every={self.refresh_every}, dtype={self.dtype}, device={self.device}, epoch={self.epoch}")

    def _indices(self, indices: Tensor, check_range: bool) -> Tensor:
        indices = check_indices(indices, self.num_samples, "indices", check_range=check_range)
        return indices.to(self.device)


def native_map_size(
    explainer: Explainer | SaliencyFn, model: nn.Module, image_shape: tuple[int, int, int], device: torch.device
) -> tuple[int, int]:
    """``(h, w)`` of the maps ``explainer`` stores in a ``"native"`` cache, from one call on one blank image.

    Lets an owner size a cache up front (its ``memory_bytes`` is then final from the start). The call runs
    isolated (no side effect on ``model``); a plain callable has no native map and gives the image size.

    Example:
        >>> from torch import nn
        >>> from exaug import create_explainer
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                       nn.Flatten(), nn.Linear(4, 3))
        >>> native_map_size(create_explainer("gradcam", model, target_layer="1"), model, (3, 8, 8), "cpu")
        (4, 4)
    """
    images = torch.zeros((1, *image_shape), device=device)
    raw = explain_normalized(explainer, images, None, model).raw
    return tuple(image_shape[-2:]) if raw is None else (int(raw.shape[-2]), int(raw.shape[-1]))  # type: ignore


def _image_size(value: Any, name: str = "image_size") -> tuple[int, int]:
    """``H`` or ``(H, W)`` as a pair of positive ints."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(pair, (tuple, list, torch.Size))
        or len(pair) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ValueError(f"{name} must be a positive int or a pair (H, W) of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])
