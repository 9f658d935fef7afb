"""One class map per dataset: the training split's classes are the label space of every split.

A folder dataset that numbers its own class folders gives a test split without class ``b`` the labels
``a=0, c=1`` while the model learnt ``a=0, b=1, c=2``: half the test images carry a wrong label and nothing fails.
The folder datasets therefore take ``classes=`` (the training split's list) and :func:`check_class_maps` checks
datasets that were built by other means.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from torch.utils.data import Dataset

from .names import describe_dataset

__all__ = ["assign_classes", "check_class_maps", "dataset_classes", "validate_classes"]

_SHOWN = 10


def _short(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return f"[{shown}{', ...' if len(names) > _SHOWN else ''}] ({len(names)})"


def validate_classes(classes: Any, argument: str = "classes") -> list[str]:
    """``classes`` as a list, after checking it is a non-empty sequence of distinct non-empty strings.

    Raises:
        ValueError: naming ``argument``, when it is not.
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ValueError(f"{argument} must be a sequence of class names, got {type(classes).__name__}")
    names = list(classes)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ValueError(f"{argument} must be a non-empty sequence of non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        duplicated = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"{argument} names class(es) {duplicated} more than once")
    return names


def assign_classes(found: Iterable[str], classes: Sequence[str] | None, where: str) -> tuple[list[str], dict[str, int]]:
    """The class list and ``class_to_idx`` of a split whose class folders are ``found``.

    Args:
        found: class names present in the split.
        classes: the training split's classes (their order gives the indices), or ``None``: the split's own
            classes, sorted (right for the training split itself).
        where: the split, as named in the error (e.g. ``"ImageFolderZip split 'test' of 'x.zip'"``).

    Raises:
        ValueError: the split has classes that ``classes`` lacks (a model trained on ``classes`` could never
            predict them), naming them and ``where``.
    """
    if classes is None:
        names = sorted(set(found))
    else:
        names = validate_classes(classes)
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise ValueError(
                f"{where} has class(es) {_short(unknown)} that the training split does not have (training "
                f"classes: {_short(names)}); a model trained on that split cannot predict them. Move those "
                "images into the training split too, or remove them."
            )
    return names, {c: i for i, c in enumerate(names)}


def _base(dataset: Any) -> Any:
    """The dataset under ``Subset`` / ``IndexedDataset`` wrappers that holds the class list."""
    while not hasattr(dataset, "classes") and isinstance(getattr(dataset, "dataset", None), Dataset):
        dataset = dataset.dataset
    return dataset


def dataset_classes(dataset: Dataset) -> list[str] | None:
    """Class names of ``dataset`` in label order (through ``Subset`` wrappers), or ``None`` when it has none."""
    classes = getattr(_base(dataset), "classes", None)
    return None if classes is None else list(classes)


def check_class_maps(train: Dataset, *others: Dataset) -> None:
    """Check that every split in ``others`` labels its images in the label space of ``train``.

    Call it once before training (``build_dataset`` already builds non-training splits with the training
    classes; this also catches datasets built by other means). A split may lack classes of ``train`` (it keeps
    the right labels); it may not have a class ``train`` lacks, nor give a shared class another index.
    Datasets without a ``classes`` attribute (e.g. a ``TensorDataset``) are not checked.

    Args:
        train: the training split (``Subset`` wrappers are looked through).
        *others: validation / test splits.

    Raises:
        ValueError: naming the split and the offending classes.

    Example:
        >>> import types
        >>> train = types.SimpleNamespace(classes=["cat", "dog"], split="train")
        >>> test = types.SimpleNamespace(classes=["dog"], split="test")
        >>> check_class_maps(train, test)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: SimpleNamespace split 'test' gives class 'dog' label 0, the training split label 1 ...
    """
    reference = dataset_classes(train)
    if reference is None:
        return
    index = {c: i for i, c in enumerate(reference)}
    for other in others:
        classes = dataset_classes(other)
        if classes is None:
            continue
        where = describe_dataset(_base(other))
        assign_classes(classes, reference, where)  # raises for classes the training split lacks
        moved = [(c, i, index[c]) for i, c in enumerate(classes) if index[c] != i]
        if moved:
            c, i, j = moved[0]
            raise ValueError(
                f"{where} gives class {c!r} label {i}, the training split label {j} ({len(moved)} class(es) "
                "differ), so its labels do not match the model's. Build it with the training classes: "
                "build_dataset(..., classes=train.classes)."
            )
