"""Dataset factory (``build_dataset``), normalisation constants and seeded train/validation splits."""

from __future__ import annotations

import os
import urllib.error
import warnings
from typing import Any, Callable, Sequence

import torch
import torchvision
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..utils.registry import did_you_mean
from .classmap import validate_classes
from .folder import ImageFolder, folder_classes
from .names import describe_dataset
from .synthetic import SYNTHETIC_MEAN, SYNTHETIC_STD, SyntheticShapes
from .tinyimagenet import TinyImageNet
from .zipfolder import ImageFolderZip, zip_split_classes

__all__ = [
    "DATASET_STATS",
    "build_dataset",
    "dataset_stats",
    "dataset_targets",
    "list_datasets",
    "split_train_val",
    "subset",
    "unwrap_subset",
]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

#: ``name -> (mean, std)`` per channel, for ``Normalize``. CIFAR values are the per-pixel statistics of the
#: training sets (SupContrast uses the same CIFAR-100 values; for CIFAR-10 it uses std (0.2023, 0.1994, 0.2010),
#: a per-image average). Tiny ImageNet and image folders use the ImageNet statistics; synthetic: see
#: ``SYNTHETIC_MEAN``.
DATASET_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "synthetic": (SYNTHETIC_MEAN, SYNTHETIC_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "tinyimagenet": _IMAGENET,
    "imagenet": _IMAGENET,
    "imagefolder": _IMAGENET,
    "imagefolder-zip": _IMAGENET,
}

_CIFAR = {
    "cifar10": (torchvision.datasets.CIFAR10, "cifar-10-batches-py", "cifar-10-python.tar.gz"),
    "cifar100": (torchvision.datasets.CIFAR100, "cifar-100-python", "cifar-100-python.tar.gz"),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return ["cifar10", "cifar100", "imagefolder", "imagefolder-zip", "synthetic", "tinyimagenet"]


def _unknown(kind: str, name: str, valid: Sequence[str]) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}.{did_you_mean(name, valid, cutoff=0.5)} Valid names: {', '.join(valid)}")


def dataset_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(mean, std)`` per channel of dataset ``name`` (a key of :data:`DATASET_STATS`)."""
    if name not in DATASET_STATS:
        raise _unknown("dataset", name, sorted(DATASET_STATS))
    return DATASET_STATS[name]


def _build_cifar(name: str, root: str, split: str, transform: Any, download: bool) -> Dataset:
    cls, folder, archive = _CIFAR[name]
    if split not in ("train", "test"):
        raise ValueError(f"{name} split must be 'train' or 'test', got {split!r}")
    # Accept the extracted folder itself as well as its parent (what torchvision expects).
    if os.path.basename(os.path.normpath(root)) == folder:
        root = os.path.dirname(os.path.normpath(root))
    try:
        return cls(root, train=split == "train", transform=transform, download=download)
    except (RuntimeError, urllib.error.URLError, OSError) as err:
        where = os.path.join(os.path.abspath(root), folder)
        action = "could not be downloaded" if download else "is missing or incomplete (download=False)"
        raise FileNotFoundError(
            f"{name}: looked for the extracted dataset in {where!r}, which {action}. Fix: pass --download "
            f"(download=True) on a machine with internet access, or extract {archive} yourself and point "
            f"--data-root (root) at the folder that contains {folder}/."
        ) from err


def _training_classes(name: str, root: str, split: str | None) -> list[str] | None:
    """The training split's classes of a folder dataset, to label another ``split`` with; ``None`` for the
    training split itself, and (with a warning) when ``root`` has no training split to take them from."""
    if split in (None, "train"):
        return None
    # A missing zip or split folder is the constructor's (clearer) error, with no warning before it.
    exists = os.path.isfile(root) if name == "imagefolder-zip" else os.path.isdir(os.path.join(root, split))
    if not exists:
        return None
    if name == "imagefolder-zip":
        found = zip_split_classes(root, "train")
    else:
        found = folder_classes(os.path.join(root, "train"))
    if found is None:
        warnings.warn(
            f"{name} {root!r} has no 'train' split, so split {split!r} is labelled by its own sorted class "
            "folders; pass classes= (the classes the model was trained on) to be sure the labels match.",
            stacklevel=3,
        )
    return found


def build_dataset(
    name: str,
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None = None,
    *,
    download: bool = False,
    classes: Sequence[str] | None = None,
    skip_bad_images: bool = False,
    **options: Any,
) -> Dataset:
    """Build a dataset by name.

    Every split is labelled in the label space of the training split: for ``imagefolder`` and
    ``imagefolder-zip``, a non-training split without ``classes`` takes the class folders of ``root``'s
    ``train`` split (Tiny ImageNet's classes come from ``wnids.txt`` for every split; CIFAR and synthetic have
    fixed classes). A split lacking some classes keeps the right labels; a class folder found only outside
    the training split raises ``ValueError`` naming it, at construction, before any training.

    Args:
        name: one of :func:`list_datasets`:

            * ``synthetic``: :class:`SyntheticShapes` (``root`` ignored; ``options`` go to its constructor, e.g.
              ``num_samples``, ``seed``, ``image_size``, ``spurious``);
            * ``cifar10`` / ``cifar100``: torchvision, ``root`` holds (or is) ``cifar-10-batches-py`` /
              ``cifar-100-python``;
            * ``tinyimagenet``: :class:`TinyImageNet`, ``root`` is ``tiny-imagenet-200`` or its parent;
            * ``imagefolder``: :class:`~exaug.data.ImageFolder` (torchvision's, with the safeguards) of
              ``root/split`` (``root`` when ``split`` is ``None``);
            * ``imagefolder-zip``: :class:`ImageFolderZip`, ``root`` is the ``.zip`` file.
        root: data location (see above).
        split: ``"train"`` or ``"test"`` (Tiny ImageNet also ``"val"``, the same images as ``"test"``).
        transform: per-sample transform (e.g. :class:`~exaug.transforms.ExConTransform`).
        download: let torchvision download CIFAR when missing (needs internet).
        classes: the label space in label order (the training split's ``classes``); ``None``: as above. For
            CIFAR and synthetic it must equal the dataset's own classes.
        skip_bad_images: for the file-based datasets (Tiny ImageNet, image folders), replace an unreadable image
            by the next readable one instead of raising :class:`~exaug.data.BadImageError`; no effect on the
            in-memory ones (CIFAR, synthetic), which have no image files.
        **options: extra constructor arguments (``synthetic`` only).

    Raises:
        ValueError: unknown name (with the closest valid one) or split; a class outside the training classes.
        FileNotFoundError: the data is not where ``root`` says, with how to fix it.
        TypeError: ``options`` given to a dataset that takes none.
    """
    if name not in list_datasets():
        raise _unknown("dataset", name, list_datasets())
    if options and name != "synthetic":
        raise TypeError(f"dataset {name!r} takes no extra options, got {sorted(options)}")
    if name == "synthetic":
        return _with_fixed_classes(SyntheticShapes(split, transform=transform, **options), classes)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root (--data-root): the folder or file holding the data")
    root = os.fspath(root)
    if name in _CIFAR:
        return _with_fixed_classes(_build_cifar(name, root, split, transform, download), classes)
    files = {"classes": classes, "skip_bad_images": skip_bad_images}
    if name == "tinyimagenet":
        return TinyImageNet(root, split, transform=transform, **files)
    if classes is None:
        files["classes"] = _training_classes(name, root, split)
    if name == "imagefolder-zip":
        return ImageFolderZip(root, split, transform=transform, **files)
    folder = os.path.join(root, split) if split else root
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"imagefolder: {folder!r} is not a directory (expected {folder}/<class>/<image>)")
    return ImageFolder(folder, transform=transform, **files)


def _with_fixed_classes(dataset: Any, classes: Sequence[str] | None) -> Dataset:
    """``dataset`` after checking that ``classes``, when given, is its own (fixed) class list."""
    if classes is not None and validate_classes(classes) != list(dataset.classes):
        raise ValueError(f"classes must be the fixed classes of {describe_dataset(dataset)} in their order "
                         f"{list(dataset.classes)}, got {list(classes)}")
    return dataset


def dataset_targets(dataset: Dataset) -> Tensor | None:
    """Labels ``(N,)`` int64 of ``dataset`` from its ``targets`` attribute (through ``Subset`` wrappers),
    or ``None`` when it does not expose them (nothing is loaded to find out)."""
    if isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset)
        return None if parent is None else parent[torch.as_tensor(dataset.indices, dtype=torch.int64)]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    return torch.as_tensor(targets, dtype=torch.int64).reshape(-1)


def unwrap_subset(dataset: Dataset, indices: Sequence[int]) -> tuple[Dataset, list[int]]:
    """The innermost dataset under (nested) ``Subset`` wrappers and the indices into it of ``indices``.

    Example:
        >>> from torch.utils.data import Subset, TensorDataset
        >>> import torch
        >>> base = TensorDataset(torch.arange(10))
        >>> inner, positions = unwrap_subset(Subset(Subset(base, [9, 8, 7, 6]), [3, 0]), [0, 1])
        >>> inner is base, positions
        (True, [6, 9])
    """
    positions = [int(i) for i in indices]
    while isinstance(dataset, Subset):
        positions = [int(dataset.indices[i]) for i in positions]
        dataset = dataset.dataset
    return dataset, positions


def _length(dataset: Dataset, argument: str) -> int:
    if not hasattr(dataset, "__len__"):
        raise TypeError(f"{argument} must be a map-style dataset with a length, got {type(dataset).__name__}")
    return len(dataset)  # type: ignore[arg-type]


def _take(n_total: int, n_take: int, targets: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Seeded choice of ``n_take`` of ``n_total`` indices: ``(taken, rest)``, both sorted.

    With ``targets``, stratified: each class gives ``n_take * count / n_total`` samples, rounded by largest
    remainder (ties to the lower class index) so that the total is exactly ``n_take``.
    """
    if targets is None:
        perm = torch.randperm(n_total, generator=generator)
        return perm[:n_take].sort().values, perm[n_take:].sort().values
    classes, counts = targets.unique(return_counts=True)
    exact = counts.double() * n_take / n_total
    quota = exact.floor().long()
    short = n_take - int(quota.sum())
    if short > 0:
        # Stable sort on the remainders: equal remainders keep class order, so the result is deterministic.
        order = torch.sort(exact - quota, descending=True, stable=True).indices
        quota[order[:short]] += 1
    taken = []
    for cls, k in zip(classes.tolist(), quota.tolist()):
        members = (targets == cls).nonzero().squeeze(1)
        taken.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    mask = torch.zeros(n_total, dtype=torch.bool)
    mask[torch.cat(taken)] = True
    return mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)


def split_train_val(
    dataset: Dataset,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    stratified: bool = True,
    val_dataset: Dataset | None = None,
) -> tuple[Subset, Subset]:
    """Seeded train/validation split (the paper tunes on an 80/20 split of the training set).

    Stratified by default: each class keeps its share in both parts (largest-remainder rounding, total
    validation size ``round(val_fraction * N)``); datasets without a ``targets`` attribute are split uniformly
    at random. The same ``(N, val_fraction, seed, labels)`` always gives the same split.

    Args:
        dataset: the training set (with training augmentation).
        val_fraction: share of samples for validation, in ``(0, 1)``.
        seed: split seed (independent of the global RNG).
        stratified: stratify by label when labels are available.
        val_dataset: the same samples with another transform (e.g. :func:`~exaug.transforms.standard_view`);
            the validation subset is taken from it, so validation images are not augmented.

    Returns:
        ``(train_subset, val_subset)`` with sorted, disjoint indices covering the dataset.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n = _length(dataset, "dataset")
    if val_dataset is None:
        val_dataset = dataset
    elif _length(val_dataset, "val_dataset") != n:
        raise ValueError(f"val_dataset must hold the same {n} samples as dataset, got {_length(val_dataset, '')}")
    targets = dataset_targets(dataset) if stratified else None
    val_idx, train_idx = _take(n, int(round(val_fraction * n)), targets, torch.Generator().manual_seed(seed))
    return Subset(dataset, train_idx.tolist()), Subset(val_dataset, val_idx.tolist())


def subset(dataset: Dataset, n: int, seed: int = 0, *, stratified: bool = True) -> Subset:
    """Seeded subset of ``n`` samples (``--train-samples N``), class-balanced like :func:`split_train_val`.

    Args:
        dataset: any dataset; stratified when it exposes ``targets``.
        n: number of samples, ``1 <= n <= len(dataset)``.
        seed: subset seed (independent of the global RNG).
        stratified: keep class proportions (largest-remainder rounding).
    """
    total = _length(dataset, "dataset")
    if not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an int in [1, {total}] (the dataset size), got {n!r}")
    targets = dataset_targets(dataset) if stratified else None
    taken, _ = _take(total, n, targets, torch.Generator().manual_seed(seed))
    return Subset(dataset, taken.tolist())
