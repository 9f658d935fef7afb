"""Tiny ImageNet (200 classes, 64x64) in its official layout, with the bounding boxes for localisation metrics."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .classmap import assign_classes
from .imagefiles import ImageFiles
from .names import describe_dataset, entry_problem, warn_skipped

__all__ = ["TinyImageNet", "find_tinyimagenet_root"]

_FOLDER = "tiny-imagenet-200"
_IMAGE_SIZE = 64


def find_tinyimagenet_root(root: str | os.PathLike[str]) -> str | None:
    """``root`` itself or ``root/tiny-imagenet-200``, whichever holds ``train/`` and ``val/``; else ``None``."""
    for candidate in (os.fspath(root), os.path.join(os.fspath(root), _FOLDER)):
        if os.path.isdir(os.path.join(candidate, "train")) and os.path.isdir(os.path.join(candidate, "val")):
            return candidate
    return None


def _read_rows(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


class TinyImageNet(ImageFiles, Dataset):
    """Tiny ImageNet from the extracted official archive.

    Layout: ``train/<wnid>/images/*.JPEG`` (boxes in ``train/<wnid>/<wnid>_boxes.txt``), ``val/images/*.JPEG``
    with labels and boxes in ``val/val_annotations.txt``, optional ``wnids.txt`` and ``words.txt``. The
    official test split has no public labels, so ``split="test"`` reads the validation images (as papers
    reporting Tiny ImageNet test accuracy do).

    Args:
        root: the ``tiny-imagenet-200`` folder or its parent.
        split: ``"train"``, ``"val"`` or ``"test"`` (= ``"val"``).
        transform: applied to the RGB ``PIL.Image`` (64x64; a few originals are greyscale and are converted).
        target_transform: applied to the integer label.
        classes: the label space in label order; ``None``: the wnids of ``wnids.txt`` (else of the ``train/``
            folders), sorted: the same for every split.
        skip_bad_images: replace an unreadable image by the next readable one instead of raising
            :class:`~exaug.data.BadImageError` (see :class:`~exaug.data.imagefiles.ImageFiles`).

    Attributes:
        classes: wnids in label order (``n01443537``, ...; sorted unless ``classes`` was given).
        wnids: the dataset's own wnids, sorted.
        class_names: human-readable name per class from ``words.txt`` (the wnid when absent).
        samples: ``[(path, class index)]``.
        targets: class index per sample.
        boxes: ``(N, 4)`` int64 ``x0, y0, x1, y1`` (inclusive pixel coordinates), ``-1`` where unknown.
        bad_images: indices replaced because they could not be decoded (in this process).

    Hidden files (``._x.JPEG``, ``.DS_Store``) and hidden or unsafe names in ``val_annotations.txt`` are skipped
    with one :class:`~exaug.data.SkippedEntriesWarning`.

    Raises:
        ValueError: ``val_annotations.txt`` names classes outside the label space (all of them are named).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        classes: Sequence[str] | None = None,
        skip_bad_images: bool = False,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test' (= 'val'), got {split!r}")
        found = find_tinyimagenet_root(root)
        if found is None:
            raise FileNotFoundError(
                f"Tiny ImageNet not found: looked for train/ and val/ in {os.fspath(root)!r} and in "
                f"{os.path.join(os.fspath(root), _FOLDER)!r}. Extract tiny-imagenet-200.zip and point root "
                "(--data-root) at the extracted folder or its parent."
            )
        self.root = found
        self.split = "val" if split == "test" else split
        self.transform = transform
        self.target_transform = target_transform
        self.init_bad_images(skip_bad_images)
        wnids_file = os.path.join(found, "wnids.txt")
        if os.path.isfile(wnids_file):
            wnids = sorted(row[0].strip() for row in _read_rows(wnids_file))
        else:
            wnids = sorted(d for d in os.listdir(os.path.join(found, "train")) if entry_problem(d) is None)
        self.wnids = wnids
        self.classes, self.class_to_idx = assign_classes(wnids, classes, describe_dataset(self))
        self.skipped_entries: list[str] = []
        words_file = os.path.join(found, "words.txt")
        words = {row[0]: row[1] for row in _read_rows(words_file) if len(row) > 1} if os.path.isfile(words_file) else {}
        self.class_names = [words.get(c, c) for c in self.classes]
        samples, boxes = self._scan_train() if self.split == "train" else self._scan_val()
        warn_skipped(describe_dataset(self), self.skipped_entries)
        if not samples:
            raise FileNotFoundError(f"no images found for split {self.split!r} under {self.root!r}")
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.boxes = torch.tensor(boxes, dtype=torch.int64).view(-1, 4)

    def _scan_train(self) -> tuple[list[tuple[str, int]], list[list[int]]]:
        samples: list[tuple[str, int]] = []
        boxes: list[list[int]] = []
        for wnid in self.wnids:
            folder = os.path.join(self.root, "train", wnid)
            image_dir = os.path.join(folder, "images")
            if not os.path.isdir(image_dir):
                raise FileNotFoundError(f"missing folder {image_dir!r} for class {wnid!r}")
            box_file = os.path.join(folder, f"{wnid}_boxes.txt")
            known = {r[0]: [int(x) for x in r[1:5]] for r in _read_rows(box_file)} if os.path.isfile(box_file) else {}
            for name in sorted(os.listdir(image_dir)):
                if entry_problem(name) is not None:
                    self.skipped_entries.append(f"train/{wnid}/images/{name}")
                elif name.lower().endswith((".jpeg", ".jpg", ".png")):
                    samples.append((os.path.join(image_dir, name), self.class_to_idx[wnid]))
                    boxes.append(known.get(name, [-1, -1, -1, -1]))
        return samples, boxes

    def _scan_val(self) -> tuple[list[tuple[str, int]], list[list[int]]]:
        annotations = os.path.join(self.root, "val", "val_annotations.txt")
        if not os.path.isfile(annotations):
            raise FileNotFoundError(f"missing {annotations!r} (labels and boxes of the validation images)")
        samples: list[tuple[str, int]] = []
        boxes: list[list[int]] = []
        rows = sorted(_read_rows(annotations))
        unknown = sorted({row[1] for row in rows} - set(self.class_to_idx))
        if unknown:
            raise ValueError(f"{describe_dataset(self)}: {annotations!r} names class(es) {unknown}, which are not "
                             f"among the {len(self.classes)} training classes")
        for row in rows:
            name, wnid = row[0], row[1]
            if entry_problem(name) is not None:
                self.skipped_entries.append(f"val/images/{name}")
                continue
            samples.append((os.path.join(self.root, "val", "images", name), self.class_to_idx[wnid]))
            boxes.append([int(x) for x in row[2:6]] if len(row) >= 6 else [-1, -1, -1, -1])
        return samples, boxes

    def box(self, index: int) -> Tensor:
        """``(4,)`` int64 box ``x0, y0, x1, y1`` of sample ``index`` (inclusive; ``-1`` when unknown)."""
        return self.boxes[index]

    def mask(self, index: int) -> Tensor:
        """Box of sample ``index`` as a ``(1, 64, 64)`` bool mask (all False when the box is unknown)."""
        x0, y0, x1, y1 = self.boxes[index].tolist()
        out = torch.zeros(1, _IMAGE_SIZE, _IMAGE_SIZE, dtype=torch.bool)
        if x0 >= 0:
            out[:, y0 : y1 + 1, x0 : x1 + 1] = True
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r}, split={self.split!r}, {len(self)} images)"
