"""``ImageFolder``: torchvision's ImageFolder with the training class map, safe names and clear bad-image errors."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torchvision
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from .classmap import assign_classes
from .imagefiles import ImageFiles
from .names import describe_dataset, entry_problem, warn_skipped

__all__ = ["ImageFolder", "folder_classes"]


def _class_folders(root: str) -> tuple[list[str], list[str]]:
    """``(class folders, skipped hidden entries)`` directly under ``root``, both sorted (hidden files count as
    skipped too, so that a folder and its zip report the same entries)."""
    entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    classes = [e.name for e in entries if e.is_dir() and entry_problem(e.name) is None]
    return classes, [e.name + ("/" if e.is_dir() else "") for e in entries if entry_problem(e.name) is not None]


def folder_classes(root: str | os.PathLike[str]) -> list[str] | None:
    """Sorted class folders of ``root`` (hidden ones left out), or ``None`` when ``root`` is not a directory or
    has none: what ``ImageFolder(root).classes`` would be."""
    root = os.fspath(root)
    return (_class_folders(root)[0] or None) if os.path.isdir(root) else None


class ImageFolder(ImageFiles, torchvision.datasets.ImageFolder):
    """``root/<class>/<image>`` like torchvision's ``ImageFolder`` (a subclass of it), with three differences.

    * ``classes=`` fixes the label space (pass the training split's classes when building another split;
      :func:`~exaug.data.build_dataset` does): a split may lack classes and keeps the right labels, a class
      folder outside ``classes`` raises ``ValueError`` naming it.
    * Hidden entries (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints/``, ``__MACOSX/``) are never classes or
      images; they are skipped with one :class:`~exaug.data.SkippedEntriesWarning` that counts them.
    * An unreadable image raises :class:`~exaug.data.BadImageError` naming the file, or with
      ``skip_bad_images=True`` is replaced by the next readable one (see
      :class:`~exaug.data.imagefiles.ImageFiles`).

    Args:
        root: the folder holding one folder per class.
        transform: applied to the RGB ``PIL.Image``.
        target_transform: applied to the integer label.
        classes: the label space in label order; ``None``: the class folders of ``root``, sorted.
        skip_bad_images: replace unreadable images instead of raising.

    Raises:
        FileNotFoundError: no class folder or no image.
        ValueError: a class folder that ``classes`` lacks.

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> for split, cls in (("train", "cat"), ("train", "dog"), ("test", "dog")):
        ...     os.makedirs(os.path.join(root, split, cls))
        ...     Image.new("RGB", (4, 4)).save(os.path.join(root, split, cls, "x.png"))
        >>> train = ImageFolder(os.path.join(root, "train"))
        >>> ImageFolder(os.path.join(root, "test"), classes=train.classes).targets
        [1]
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        classes: Sequence[str] | None = None,
        skip_bad_images: bool = False,
    ) -> None:
        self.init_bad_images(skip_bad_images)
        # Read by find_classes / _keep, which torchvision's constructor calls.
        self.wanted_classes = None if classes is None else list(classes)
        self.skipped_entries: list[str] = []
        super().__init__(os.fspath(root), transform=transform, target_transform=target_transform,
                         is_valid_file=self._keep, allow_empty=classes is not None)
        warn_skipped(describe_dataset(self), self.skipped_entries)
        if not self.samples:
            raise FileNotFoundError(f"no images found in {self.root!r} (expected {self.root}/<class>/<image>)")

    def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
        """Class folders of ``directory`` (hidden ones skipped), indexed by ``classes`` when given."""
        found, skipped = _class_folders(os.fspath(directory))
        self.skipped_entries.extend(skipped)
        if not found and self.wanted_classes is None:
            raise FileNotFoundError(f"no class folder in {os.fspath(directory)!r} (expected <class>/<image>)")
        return assign_classes(found, self.wanted_classes, describe_dataset(self))

    def _keep(self, path: str) -> bool:
        """Whether ``path`` (under a class folder) is an image sample; hidden files are recorded as skipped."""
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        if entry_problem(relative) is not None:
            self.skipped_entries.append(relative)
            return False
        return path.lower().endswith(IMG_EXTENSIONS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r}, {len(self)} images, {len(self.classes)} classes)"
