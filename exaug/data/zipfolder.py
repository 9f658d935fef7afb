"""``ImageFolderZip``: an ImageFolder stored in a zip archive, read without extracting it."""

from __future__ import annotations

import functools
import io
import os
import zipfile
from typing import IO, Any, Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .classmap import assign_classes
from .imagefiles import ImageFiles
from .names import describe_dataset, entry_problem, warn_skipped

__all__ = ["ImageFolderZip", "zip_split_classes"]


def _split_prefix(split: str | None) -> str:
    return f"{split.strip('/')}/" if split else ""


def _index_members(names: Sequence[str], prefix: str) -> tuple[dict[str, list[str]], list[str]]:
    """``({class: [member]}, skipped)`` for the image members laid out as ``<prefix><class>/<file>``.

    Hidden and unsafe members (:func:`~exaug.data.names.entry_problem`) are skipped wherever they are in the
    archive, so ``__MACOSX/`` or ``../x.jpg`` never turn into classes; other members outside the layout (deeper
    folders, other splits, non-image files) are ignored as before.
    """
    by_class: dict[str, list[str]] = {}
    skipped: list[str] = []
    for name in names:
        if name.endswith("/"):  # a directory entry
            continue
        if entry_problem(name) is not None:
            skipped.append(name)
            continue
        if not name.startswith(prefix) or not name.lower().endswith(IMG_EXTENSIONS):
            continue
        parts = name[len(prefix) :].split("/")
        if len(parts) == 2 and parts[0] and parts[1]:  # exactly <class>/<file>
            by_class.setdefault(parts[0], []).append(name)
    return by_class, skipped


def zip_split_classes(zip_path: str | os.PathLike[str], split: str | None = "train") -> list[str] | None:
    """Sorted class folders of ``split`` in the zip (what ``ImageFolderZip(zip_path, split).classes`` would be),
    or ``None`` when the split holds no image. Reads the central directory only and warns about nothing."""
    path = os.path.abspath(os.fspath(zip_path))
    stat = os.stat(path)
    found = _cached_classes(path, stat.st_mtime_ns, stat.st_size, _split_prefix(split))
    return None if found is None else list(found)


@functools.lru_cache(maxsize=16)
def _cached_classes(path: str, mtime_ns: int, size: int, prefix: str) -> tuple[str, ...] | None:
    # Keyed on the file's stat too, so a rewritten archive is read again. A run builds its test split several
    # times (validation, evaluation); a 60 000-member central directory takes ~0.4 s to read.
    with zipfile.ZipFile(path) as archive:
        by_class, _ = _index_members(archive.namelist(), prefix)
    return tuple(sorted(by_class)) or None


class ImageFolderZip(ImageFiles, Dataset):
    """Images laid out as ``<split>/<class>/<file>`` inside a zip, e.g. ``train/cat/0001.jpg``.

    The archive's central directory is read once at construction; images are decoded on access. Each process
    opens its own ``ZipFile`` handle lazily (a handle shared across ``fork`` would interleave seeks of different
    DataLoader workers), and the handle is dropped when the dataset is pickled (``spawn`` workers). Hidden and
    unsafe members (``__MACOSX/``, ``.DS_Store``, ``._x.jpg``, ``../x.jpg``, absolute names) are skipped with one
    :class:`~exaug.data.SkippedEntriesWarning` that counts them.

    Args:
        zip_path: path of the ``.zip`` file.
        split: top-level folder to read (``"train"``, ``"test"``, ...); ``None`` reads ``<class>/<file>`` at the
            archive root.
        transform: applied to the RGB ``PIL.Image``.
        target_transform: applied to the integer label.
        classes: the label space, in label order (pass the training split's ``classes`` when building another
            split; :func:`~exaug.data.build_dataset` does); ``None``: this split's class folders, sorted.
        skip_bad_images: replace an unreadable image by the next readable one instead of raising
            :class:`~exaug.data.BadImageError` (see :class:`~exaug.data.imagefiles.ImageFiles`).

    Attributes:
        classes: class names in label order.
        class_to_idx: ``{class name: index}``.
        samples: ``[(member name, class index)]`` sorted by member name.
        targets: class index per sample.
        bad_images: indices replaced because they could not be decoded (in this process).

    Raises:
        FileNotFoundError: no zip at ``zip_path``, or no image under ``split``.
        ValueError: ``split`` has a class folder that ``classes`` lacks (named in the message).

    Example:
        >>> import io, os, tempfile, zipfile
        >>> from PIL import Image
        >>> png = io.BytesIO(); Image.new("RGB", (4, 4), (255, 0, 0)).save(png, format="PNG")
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.zip")
        >>> with zipfile.ZipFile(path, "w") as archive:
        ...     for member in ("train/cat/a.png", "train/dog/b.png", "test/dog/c.png"):
        ...         archive.writestr(member, png.getvalue())
        >>> train = ImageFolderZip(path, "train")
        >>> test = ImageFolderZip(path, "test", classes=train.classes)
        >>> test.classes, test.targets  # 'dog' keeps the training label 1
        (['cat', 'dog'], [1])
    """

    def __init__(
        self,
        zip_path: str | os.PathLike[str],
        split: str | None = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        classes: Sequence[str] | None = None,
        skip_bad_images: bool = False,
    ) -> None:
        self.zip_path = os.fspath(zip_path)
        if not os.path.isfile(self.zip_path):
            raise FileNotFoundError(f"zip_path {self.zip_path!r} does not exist or is not a file")
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self.init_bad_images(skip_bad_images)
        prefix = _split_prefix(split)
        with zipfile.ZipFile(self.zip_path) as archive:
            names = archive.namelist()
        by_class, skipped = _index_members(names, prefix)
        warn_skipped(describe_dataset(self), skipped)
        if not by_class:
            tops = sorted({n.split("/")[0] for n in names if "/" in n and entry_problem(n) is None})
            raise FileNotFoundError(
                f"no images found under {prefix or 'the root'} of {self.zip_path!r} (expected "
                f"{prefix}<class>/<image>{' with split=' + repr(split) if split else ''}); top-level folders: {tops}"
            )
        self.classes, self.class_to_idx = assign_classes(by_class, classes, describe_dataset(self))
        self.samples = sorted((n, self.class_to_idx[c]) for c, files in by_class.items() for n in files)
        self.targets = [target for _, target in self.samples]
        self._archive: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def _open(self) -> zipfile.ZipFile:
        if self._archive is None or self._pid != os.getpid():
            # After a fork the inherited handle shares its file offset with the parent: open a new one.
            self._archive = zipfile.ZipFile(self.zip_path)
            self._pid = os.getpid()
        return self._archive

    def image_source(self, index: int) -> str:
        """``"<zip path>:<member>"`` of sample ``index``."""
        return f"{self.zip_path}:{self.samples[index][0]}"

    def open_file(self, index: int) -> IO[bytes]:
        """The bytes of sample ``index``'s member (read whole: a zip member stream cannot seek back)."""
        return io.BytesIO(self._open().read(self.samples[index][0]))

    def close(self) -> None:
        """Close this process's archive handle (it is reopened on the next access)."""
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_archive"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.zip_path!r}, split={self.split!r}, "
            f"{len(self)} images, {len(self.classes)} classes)"
        )
