"""``ImageFolderZip``: an ImageFolder stored in a zip archive, read without extracting it."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any, Callable

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = ["ImageFolderZip"]


class ImageFolderZip(Dataset):
    """Images laid out as ``<split>/<class>/<file>`` inside a zip, e.g. ``train/cat/0001.jpg``.

    The archive's central directory is read once at construction; images are decoded on access. Each process
    opens its own ``ZipFile`` handle lazily (a handle shared across ``fork`` would interleave seeks of different
    DataLoader workers), and the handle is dropped when the dataset is pickled (``spawn`` workers).

    Args:
        zip_path: path of the ``.zip`` file.
        split: top-level folder to read (``"train"``, ``"test"``, ...); ``None`` reads ``<class>/<file>`` at the
            archive root.
        transform: applied to the RGB ``PIL.Image``.
        target_transform: applied to the integer label.

    Attributes:
        classes: sorted class folder names.
        class_to_idx: ``{class name: index}``.
        samples: ``[(member name, class index)]`` sorted by member name.
        targets: class index per sample.
    """

    def __init__(
        self,
        zip_path: str | os.PathLike[str],
        split: str | None = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        self.zip_path = os.fspath(zip_path)
        if not os.path.isfile(self.zip_path):
            raise FileNotFoundError(f"zip_path {self.zip_path!r} does not exist or is not a file")
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        prefix = f"{split.strip('/')}/" if split else ""
        with zipfile.ZipFile(self.zip_path) as archive:
            names = archive.namelist()
        by_class: dict[str, list[str]] = {}
        for name in names:
            if not name.startswith(prefix) or not name.lower().endswith(IMG_EXTENSIONS):
                continue
            parts = name[len(prefix) :].split("/")
            if len(parts) == 2 and parts[0] and parts[1]:  # exactly <class>/<file>
                by_class.setdefault(parts[0], []).append(name)
        if not by_class:
            tops = sorted({n.split("/")[0] for n in names if "/" in n})
            raise FileNotFoundError(
                f"no images found under {prefix or 'the root'} of {self.zip_path!r} (expected "
                f"{prefix}<class>/<image>{' with split=' + repr(split) if split else ''}); top-level folders: {tops}"
            )
        self.classes = sorted(by_class)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
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

    def load(self, index: int) -> Image.Image:
        """Decode sample ``index`` as an RGB image (no transform)."""
        data = self._open().read(self.samples[index][0])
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = self.load(index)
        target: Any = self.samples[index][1]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

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
