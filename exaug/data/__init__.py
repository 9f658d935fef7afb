"""Datasets: the offline ``SyntheticShapes``, CIFAR, Tiny ImageNet, image folders (plain or zipped).

Every split is labelled in the training split's label space (``classes=``, :func:`check_class_maps`), hidden and
unsafe entries never become classes, and unreadable images raise :class:`BadImageError` naming the file (or are
replaced, ``skip_bad_images=True``); :func:`check_images` finds them all up front. See ``docs/data.md``.
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
    unwrap_subset,
)
from .checks import BadImage, ImageCheckReport, check_images
from .classmap import check_class_maps, dataset_classes
from .folder import ImageFolder
from .imagefiles import BadImageError, BadImageWarning, ImageFiles
from .indexed import IndexedDataset
from .names import SkippedEntriesWarning
from .synthetic import SHAPE_NAMES, SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes, render_shapes
from .tinyimagenet import TinyImageNet
from .zipfolder import ImageFolderZip

__all__ = [
    "DATASET_STATS",
    "SHAPE_NAMES",
    "SYNTHETIC_MEAN",
    "SYNTHETIC_STD",
    "BadImage",
    "BadImageError",
    "BadImageWarning",
    "ImageCheckReport",
    "ImageFiles",
    "ImageFolder",
    "ImageFolderZip",
    "IndexedDataset",
    "SkippedEntriesWarning",
    "SyntheticShapes",
    "TinyImageNet",
    "build_dataset",
    "check_class_maps",
    "check_images",
    "dataset_classes",
    "dataset_stats",
    "dataset_targets",
    "list_datasets",
    "render_shapes",
    "split_train_val",
    "subset",
    "unwrap_subset",
]
