"""``check_images``: decode every image of a dataset up front and report the unreadable ones."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from torch.utils.data import DataLoader, Dataset

from .builders import unwrap_subset
from .imagefiles import BadImageError, ImageFiles
from .names import describe_dataset

__all__ = ["BadImage", "ImageCheckReport", "check_images"]

_LISTED = 20


@dataclasses.dataclass(frozen=True)
class BadImage:
    """One unreadable image: its ``index`` in the checked dataset, ``source`` (path or ``zip:member``), ``reason``."""

    index: int
    source: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ImageCheckReport:
    """What :func:`check_images` found.

    Attributes:
        dataset: the dataset, as named in messages.
        checked: number of images decoded (0 for datasets that do not read image files).
        bad: the unreadable ones, by index.
        reads_files: whether the dataset reads image files at all (``False``: synthetic, CIFAR, tensors).
    """

    dataset: str
    checked: int
    bad: tuple[BadImage, ...]
    reads_files: bool = True

    @property
    def ok(self) -> bool:
        """No unreadable image."""
        return not self.bad

    def __str__(self) -> str:
        if not self.reads_files:
            return f"{self.dataset}: nothing to check (images are not read from files)"
        head = f"{self.dataset}: {self.checked} images checked, {len(self.bad)} unreadable"
        lines = [f"  [{b.index}] {b.source}: {b.reason}" for b in self.bad[:_LISTED]]
        if len(self.bad) > _LISTED:
            lines.append(f"  ... and {len(self.bad) - _LISTED} more")
        return "\n".join([head, *lines])

    def raise_if_bad(self) -> None:
        """Raise :class:`BadImageError` listing the unreadable images, if any."""
        if self.bad:
            raise BadImageError(
                f"{self}\nFix: replace or delete these files, or pass skip_bad_images=True "
                "(--skip-bad-images) to use the next readable image instead.",
                source=self.bad[0].source, dataset=self.dataset,
            )


class _Checks(Dataset):
    """Item ``k`` = ``(k, reason or None)`` for image ``indices[k]`` of ``files``: the check, run in workers."""

    def __init__(self, files: ImageFiles, indices: Sequence[int]) -> None:
        self.files = files
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, str | None]:
        return k, self.files.check_image(self.indices[k])


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def check_images(
    dataset: Dataset,
    indices: Sequence[int] | None = None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
) -> ImageCheckReport:
    """Decode images of ``dataset`` and report those that cannot be read (``exaug train --check-data``).

    Each image is checked with PIL's ``verify()`` (container structure, PNG checksums) and then decoded in draft
    mode (JPEG at 1/8 scale: the whole stream is read, so truncation is caught, at a fraction of the cost). No
    transform runs and ``skip_bad_images`` plays no part: every bad file is reported. ``Subset`` wrappers are
    looked through; reported indices are positions in ``dataset`` itself.

    Args:
        dataset: an :class:`~exaug.data.ImageFolderZip`, :class:`~exaug.data.ImageFolder` or
            :class:`~exaug.data.TinyImageNet` (or a ``Subset`` of one); any other dataset does not read image
            files and gives an empty report with ``reads_files=False``.
        indices: positions to check (e.g. ``range(batch_size)`` for a quick check of the first batch); ``None``:
            all.
        batch_size: images per DataLoader batch (the progress bar advances per batch).
        num_workers: DataLoader worker processes decoding in parallel.
        progress: show a tqdm progress bar.

    Returns:
        An :class:`ImageCheckReport`; ``report.raise_if_bad()`` turns it into a :class:`BadImageError`.

    Example:
        >>> import io, os, tempfile, zipfile
        >>> from PIL import Image
        >>> from exaug.data import ImageFolderZip
        >>> png = io.BytesIO(); Image.new("RGB", (4, 4)).save(png, format="PNG")
        >>> path = os.path.join(tempfile.mkdtemp(), "data.zip")
        >>> with zipfile.ZipFile(path, "w") as archive:
        ...     archive.writestr("train/cat/good.png", png.getvalue())
        ...     archive.writestr("train/cat/notes.jpg", b"not an image")
        >>> report = check_images(ImageFolderZip(path, "train"))
        >>> report.checked, [bad.source.rsplit(":", 1)[1] for bad in report.bad]
        (2, ['train/cat/notes.jpg'])
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    n = len(dataset)  # type: ignore[arg-type]
    positions = list(range(n)) if indices is None else [range(n)[i] for i in indices]
    files, base_indices = unwrap_subset(dataset, positions)
    name = describe_dataset(files)
    if not isinstance(files, ImageFiles):
        return ImageCheckReport(name, 0, (), reads_files=False)
    loader = DataLoader(_Checks(files, base_indices), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_as_list)
    from tqdm.auto import tqdm  # imported here: only a check pays for it

    bad = []
    with tqdm(total=len(positions), desc="checking images", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            for k, reason in batch:
                if reason is not None:
                    bad.append(BadImage(positions[k], files.image_source(base_indices[k]), reason))
            bar.update(len(batch))
    return ImageCheckReport(name, len(positions), tuple(bad))
