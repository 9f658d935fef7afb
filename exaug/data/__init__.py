"""Datasets: the offline ``SyntheticShapes``, CIFAR, Tiny ImageNet, image folders (plain or zipped).

See ``docs/data.md``.
"""

from __future__ import annotations

from .builders import (
    DATASET_STATS,
    build_dataset,
    dataset_stats,
    dataset_targets,
    list_datasets,
    split_train_val,
    subset,
)
from .indexed import IndexedDataset
from .synthetic import SHAPE_NAMES, SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes, render_shapes
from .tinyimagenet import TinyImageNet
from .zipfolder import ImageFolderZip

__all__ = [
    "DATASET_STATS",
    "SHAPE_NAMES",
    "SYNTHETIC_MEAN",
    "SYNTHETIC_STD",
    "ImageFolderZip",
    "IndexedDataset",
    "SyntheticShapes",
    "TinyImageNet",
    "build_dataset",
    "dataset_stats",
    "dataset_targets",
    "list_datasets",
    "render_shapes",
    "split_train_val",
    "subset",
]
