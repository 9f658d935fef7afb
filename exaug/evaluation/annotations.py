"""What an evaluated dataset knows beyond its images: ground-truth object masks and class names.

Both work through ``Subset`` wrappers (as built by :func:`exaug.training.loaders.build_eval_dataset`) down to the
dataset that holds the annotations.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

__all__ = ["class_names", "object_masks", "unwrap_subsets"]


def unwrap_subsets(dataset: Dataset, indices: Sequence[int]) -> tuple[Dataset, list[int]]:
    """The innermost dataset under ``Subset`` wrappers and the indices of ``indices`` in it.

    Example:
        >>> import torch
        >>> from torch.utils.data import Subset, TensorDataset
        >>> base = TensorDataset(torch.arange(10))
        >>> inner, positions = unwrap_subsets(Subset(Subset(base, [9, 7, 5]), [2, 0]), [0, 1])
        >>> inner is base, positions
        (True, [5, 9])
    """
    indices = list(indices)
    while isinstance(dataset, Subset):
        indices = [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def object_masks(dataset: Dataset, indices: Sequence[int], size: tuple[int, int]) -> Tensor | None:
    """Ground-truth object masks of samples ``indices`` of ``dataset``, or ``None`` when it has none.

    The innermost dataset must have a ``mask(i)`` method: :class:`~exaug.data.SyntheticShapes` (exact object
    masks) and :class:`~exaug.data.TinyImageNet` (bounding boxes as masks; all False where the box is unknown).

    Example:
        >>> import torch
        >>> class Squares(torch.utils.data.Dataset):
        ...     def __len__(self) -> int:
        ...         return 2
        ...     def mask(self, i: int) -> torch.Tensor:
        ...         m = torch.zeros(1, 4, 4, dtype=torch.bool)
        ...         m[:, i:i + 2, i:i + 2] = True
        ...         return m
        >>> object_masks(Squares(), [1], (2, 2)).int().tolist()  # resized (nearest: the top-left pixel of each cell)
        [[[[0, 0], [0, 1]]]]

    Args:
        dataset: the evaluated dataset.
        indices: positions in ``dataset``.
        size: ``(H, W)`` of the model's input; masks of another size are resized (nearest), as the standard view
            resizes the images.

    Returns:
        ``(B, 1, H, W)`` bool, or ``None``.

    Shape:
        - Output: ``(len(indices), 1, H, W)`` with ``(H, W) = size``.
    """
    base, inner = unwrap_subsets(dataset, indices)
    mask_of = getattr(base, "mask", None)
    if not callable(mask_of):
        return None
    if not inner:
        return torch.zeros(0, 1, *size, dtype=torch.bool)
    masks = torch.stack([torch.as_tensor(mask_of(i)) for i in inner])
    masks = masks.reshape(len(inner), 1, *masks.shape[-2:])  # (1, H, W) or (H, W) per sample -> (B, 1, H, W)
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = torch.nn.functional.interpolate(masks.float(), size=size, mode="nearest") > 0.5
    return masks.bool()


def class_names(dataset: Dataset) -> list[str] | None:
    """The class names of the innermost dataset (its ``class_names`` or ``classes``), or ``None``.

    Example:
        >>> import torch
        >>> class Named(torch.utils.data.TensorDataset):
        ...     classes = ["cat", "dog"]
        >>> class_names(torch.utils.data.Subset(Named(torch.zeros(2)), [1]))
        ['cat', 'dog']
    """
    base, _ = unwrap_subsets(dataset, [])
    names = getattr(base, "class_names", None) or getattr(base, "classes", None)
    return [str(n) for n in names] if names is not None else None
