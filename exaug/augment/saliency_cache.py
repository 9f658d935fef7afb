"""``SaliencyCache``: the saliency map of every image of a fixed, indexed dataset, recomputed every k epochs.

:class:`~exaug.ExplanationMaskAugment` explains the *standard* (un-augmented) view of each training image. That
input is the same in every epoch, so its map only changes as fast as the model does: recomputing it every
``refresh_every`` epochs instead of at every batch divides the explainer cost by about that factor, which makes
expensive explainers (Integrated Gradients, SmoothGrad, RISE: 15-180 forwards per batch) affordable in training.
The price is staleness: a map may come from the model of up to ``refresh_every - 1`` epochs earlier, while the
ExCon paper explains every batch with the current model.

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

from ..utils.checks import positive_int
from ..utils.checks import check_indices

__all__ = ["SaliencyCache"]


#: ``compute(rows)`` -> ``(maps (R, 1, H, W), flat (R,))`` for the batch rows ``rows`` (``None``: every row).
ComputeFn = Callable[[Tensor | None], tuple[Tensor, Tensor]]


class SaliencyCache(nn.Module):
    """Per-sample saliency maps with the epoch they were computed at (one slot per dataset index).

    The owner calls :meth:`set_epoch` at the start of every epoch (like ``DistributedSampler.set_epoch``); a map
    computed at epoch ``e`` is served through epoch ``e + refresh_every - 1`` and is stale from ``e +
    refresh_every`` on. :class:`~exaug.ExplanationMaskAugment` with ``cache=`` does the bookkeeping: it explains
    only the stale rows of each batch and stores their maps.

    Checkpoints: ``cache.state_dict()`` holds ``maps``, ``flat``, ``epoch_computed`` and ``_extra_state``
    (``{"epoch", "hits", "misses"}``); ``load_state_dict`` into a cache of the same ``num_samples`` and
    ``image_size`` restores all of them (staleness is then judged with the loading cache's ``refresh_every``).

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

    Args:
        num_samples: ``N``, the size of the indexed dataset; indices lie in ``[0, N)``.
        image_size: ``H`` (square maps) or ``(H, W)``: the size of the explained images.
        refresh_every: ``k``, the number of epochs a map serves (computed at ``e``, recomputed at ``e + k``; 1:
            every epoch).
        dtype: floating storage dtype. ``float16`` halves the memory of ``float32`` (CIFAR, 50,000 maps of 32x32:
            100 MB) and stores values in ``[0, 1]`` to within 2.5e-4; ``bfloat16`` to within 2e-3.
        device: where the buffers live (default: the CPU). The training device avoids a copy per batch; the CPU
            holds larger datasets (``N * H * W * 2`` bytes in float16). ``cache.to(device)`` moves them later.

    Attributes:
        maps: buffer, the stored maps (``dtype``); rows never computed hold zeros.
        flat: buffer, bool, maps that carried no information (see :func:`~exaug.explainers.normalize_saliency`).
        epoch_computed: buffer, int64, the epoch each map was computed at, -1 for never.
        epoch: the current epoch (set by :meth:`set_epoch`).
        hits: rows served by :meth:`get` since creation or :meth:`reset` (a Python int: no host sync).
        misses: rows (re)computed, i.e. written by :meth:`put`.

    Shape:
        - maps: ``(N, 1, H, W)``.
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
    ) -> None:
        super().__init__()
        self.num_samples = positive_int("num_samples", num_samples)
        self.refresh_every = positive_int("refresh_every", refresh_every)
        self.image_size = _image_size(image_size)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating point torch.dtype (e.g. torch.float16), got {dtype!r}")
        device = torch.device("cpu") if device is None else torch.device(device)
        self.register_buffer("maps", torch.zeros((self.num_samples, 1, *self.image_size), dtype=dtype, device=device))
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
    def get(self, indices: Tensor, *, check_range: bool = True) -> tuple[Tensor, Tensor]:
        """The stored maps of ``indices``, whether or not they are stale (check :meth:`stale` first).

        Args:
            indices: ``(B,)`` integer dataset indices in ``[0, N)``.
            check_range: range-check ``indices`` (one host sync); skip it for indices :meth:`stale` has checked.

        Returns:
            ``(maps, flat)``: ``(B, 1, H, W)`` float32 and ``(B,)`` bool, on the cache's device.
        """
        indices = self._indices(indices, check_range=check_range)
        self.hits += indices.shape[0]
        return self.maps.index_select(0, indices).float(), self.flat.index_select(0, indices)

    def put(self, indices: Tensor, maps: Tensor, flat: Tensor, *, check_range: bool = True) -> None:
        """Store freshly computed maps of ``indices``, stamped with the current epoch.

        Args:
            indices: ``(B,)`` integer dataset indices in ``[0, N)``; if one appears twice, either row is kept.
            maps: ``(B, 1, H, W)`` floating maps, normalised to ``[0, 1]`` (cast to the storage dtype).
            flat: ``(B,)`` bool flat flags.
            check_range: range-check ``indices`` (one host sync); skip it for indices :meth:`stale` has checked.
        """
        indices = self._indices(indices, check_range=check_range)
        b = indices.shape[0]
        if not isinstance(maps, Tensor) or maps.shape != (b, 1, *self.image_size) or not maps.is_floating_point():
            shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
            raise ValueError(f"maps must be floating point of shape (B, 1, H, W) = {(b, 1, *self.image_size)}, "
                             f"got {shape}")
        if not isinstance(flat, Tensor) or flat.dtype != torch.bool or flat.shape != (b,):
            desc = f"{flat.dtype} {tuple(flat.shape)}" if isinstance(flat, Tensor) else type(flat).__name__
            raise ValueError(f"flat must be a bool tensor of shape ({b},), got {desc}")
        self.maps.index_copy_(0, indices, maps.detach().to(self.device, self.maps.dtype))
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
            compute: ``compute(rows)`` returns ``(maps, flat)`` for the batch rows ``rows`` (an int64 tensor of
                positions in the batch, increasing), or for every row when ``rows`` is ``None``.
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
            maps, flat = compute(None)
            self.put(indices, maps, flat, check_range=False)
            return maps, flat, True
        # The other rows in increasing order without another sync: a stable sort puts the b - k fresh rows first.
        fresh_rows = torch.argsort(stale.to(torch.uint8), stable=True)[: b - k]
        indices = indices.to(device)
        cached, cached_flat = self.get(indices.index_select(0, fresh_rows), check_range=False)
        cached, cached_flat = cached.to(device), cached_flat.to(device)
        if k == 0:
            return cached, cached_flat, False
        fresh, fresh_flat = compute(stale_rows)
        self.put(indices.index_select(0, stale_rows), fresh, fresh_flat, check_range=False)
        maps = fresh.new_empty((b, *fresh.shape[1:]))
        maps.index_copy_(0, stale_rows, fresh).index_copy_(0, fresh_rows, cached)
        flat = fresh_flat.new_empty(b)
        flat.index_copy_(0, stale_rows, fresh_flat).index_copy_(0, fresh_rows, cached_flat)
        return maps, flat, False

    def reset(self) -> None:
        """Mark every map as never computed and zero the counters (the current epoch is kept)."""
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
    def device(self) -> torch.device:
        return self.maps.device

    @property
    def dtype(self) -> torch.dtype:
        return self.maps.dtype

    def __len__(self) -> int:
        return self.num_samples

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

    def extra_repr(self) -> str:
        h, w = self.image_size
        return (f"num_samples={self.num_samples}, image_size=({h}, {w}), refresh_every={self.refresh_every}, "
                f"dtype={self.dtype}, device={self.device}, epoch={self.epoch}")

    def _indices(self, indices: Tensor, check_range: bool) -> Tensor:
        indices = check_indices(indices, self.num_samples, "indices", check_range=check_range)
        return indices.to(self.device)


def _image_size(value: Any) -> tuple[int, int]:
    """``H`` or ``(H, W)`` as a pair of positive ints."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(pair, (tuple, list, torch.Size))
        or len(pair) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ValueError(f"image_size must be a positive int or a pair (H, W) of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])
