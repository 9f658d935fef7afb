"""``IndexedDataset``: a dataset whose items also carry their index, for per-sample state such as a saliency cache."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

__all__ = ["IndexedDataset"]


class IndexedDataset(Dataset):
    """``dataset[i] = (x, y)`` becomes ``(x, y, i)``; the default collate turns the indices into a ``(B,)`` int64
    tensor.

    The index is the position in the wrapped dataset (for a ``Subset``, the position in the subset, not in the
    dataset underneath), so per-sample state can be kept in ``len(dataset)`` slots.

    Args:
        dataset: a map-style dataset whose items are tuples (e.g. ``(image, label)``).
    """

    def __init__(self, dataset: Dataset) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset must be a map-style dataset (with __len__ and __getitem__), "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        if not isinstance(item, tuple):
            raise TypeError(f"IndexedDataset needs tuple items such as (image, label), got {type(item).__name__}")
        return (*item, index)

    def __repr__(self) -> str:
        return f"IndexedDataset({self.dataset!r})"
