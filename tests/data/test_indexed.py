from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from exaug.data import IndexedDataset


def test_items_carry_their_position_and_collate_to_int64():
    base = TensorDataset(torch.arange(10.0).view(10, 1), torch.arange(10) % 3)
    indexed = IndexedDataset(Subset(base, [9, 4, 7, 1]))
    assert len(indexed) == 4
    x, y, i = indexed[2]
    assert (float(x), int(y), i) == (7.0, 1, 2)  # the position in the subset, not in the base dataset
    xs, ys, idx = next(iter(DataLoader(indexed, batch_size=4)))
    assert idx.dtype == torch.int64 and idx.tolist() == [0, 1, 2, 3] and xs.view(-1).tolist() == [9, 4, 7, 1]


def test_needs_a_map_style_dataset_with_tuple_items():
    with pytest.raises(TypeError, match="map-style dataset"):
        IndexedDataset(iter([]))
    with pytest.raises(TypeError, match="tuple items"):
        IndexedDataset([torch.zeros(1)])[0]
