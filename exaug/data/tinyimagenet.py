"""Tiny ImageNet (200 classes, 64x64) in its official layout, with the bounding boxes for localisation metrics."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

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


class TinyImageNet(Dataset):
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

    Attributes:
        classes: sorted wnids (``n01443537``, ...).
        class_names: human-readable name per class from ``words.txt`` (the wnid when absent).
        samples: ``[(path, class index)]``.
        targets: class index per sample.
        boxes: ``(N, 4)`` int64 ``x0, y0, x1, y1`` (inclusive pixel coordinates), ``-1`` where unknown.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
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
        wnids_file = os.path.join(found, "wnids.txt")
        if os.path.isfile(wnids_file):
            self.classes = sorted(row[0].strip() for row in _read_rows(wnids_file))
        else:
            self.classes = sorted(d for d in os.listdir(os.path.join(found, "train")) if not d.startswith("."))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        words_file = os.path.join(found, "words.txt")
        words = {row[0]: row[1] for row in _read_rows(words_file) if len(row) > 1} if os.path.isfile(words_file) else {}
        self.class_names = [words.get(c, c) for c in self.classes]
        samples, boxes = self._scan_train() if self.split == "train" else self._scan_val()
        if not samples:
            raise FileNotFoundError(f"no images found for split {self.split!r} under {self.root!r}")
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.boxes = torch.tensor(boxes, dtype=torch.int64).view(-1, 4)

    def _scan_train(self) -> tuple[list[tuple[str, int]], list[list[int]]]:
        samples: list[tuple[str, int]] = []
        boxes: list[list[int]] = []
        for wnid in self.classes:
            folder = os.path.join(self.root, "train", wnid)
            image_dir = os.path.join(folder, "images")
            if not os.path.isdir(image_dir):
                raise FileNotFoundError(f"missing folder {image_dir!r} for class {wnid!r}")
            box_file = os.path.join(folder, f"{wnid}_boxes.txt")
            known = {r[0]: [int(x) for x in r[1:5]] for r in _read_rows(box_file)} if os.path.isfile(box_file) else {}
            for name in sorted(os.listdir(image_dir)):
                if name.lower().endswith((".jpeg", ".jpg", ".png")):
                    samples.append((os.path.join(image_dir, name), self.class_to_idx[wnid]))
                    boxes.append(known.get(name, [-1, -1, -1, -1]))
        return samples, boxes

    def _scan_val(self) -> tuple[list[tuple[str, int]], list[list[int]]]:
        annotations = os.path.join(self.root, "val", "val_annotations.txt")
        if not os.path.isfile(annotations):
            raise FileNotFoundError(f"missing {annotations!r} (labels and boxes of the validation images)")
        samples: list[tuple[str, int]] = []
        boxes: list[list[int]] = []
        for row in sorted(_read_rows(annotations)):
            name, wnid = row[0], row[1]
            if wnid not in self.class_to_idx:
                raise ValueError(f"{annotations!r} names class {wnid!r}, which is not in the training classes")
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

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, target if self.target_transform is None else self.target_transform(target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r}, split={self.split!r}, {len(self)} images)"
