"""Decoding image files of a dataset: clear errors for bad images, or a deterministic replacement.

A corrupt, truncated, zero-byte or mislabelled (text named ``.jpg``) file used to surface mid-epoch as a raw PIL
traceback that named neither the file nor the zip member. :class:`ImageFiles` is the mixin the folder datasets
share: every decode failure becomes a :class:`BadImageError` naming the file (or ``zip path:member``) and the
dataset, and with ``skip_bad_images=True`` the sample is replaced by the next readable one.
"""

from __future__ import annotations

import os
import warnings
from typing import IO, Any, Callable

from PIL import Image

from .names import describe_dataset

__all__ = ["BadImageError", "BadImageWarning", "ImageFiles"]

_FIX = ("Fix: replace or delete the file; `exaug train --check-data` (exaug.data.check_images) lists every "
        "unreadable image; skip_bad_images=True uses the next readable image instead.")


class BadImageError(ValueError):
    """An image file of a dataset cannot be decoded.

    The constructor takes the message alone, so that a DataLoader worker re-raises it in the main process as a
    ``BadImageError`` (PyTorch rebuilds worker exceptions from their message); ``source`` and ``dataset`` are
    set when it is raised by a dataset.

    Attributes:
        source: the file path, or ``"<zip path>:<member>"``.
        dataset: the dataset, as named in the message.
    """

    def __init__(self, message: str, *, source: str | None = None, dataset: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.dataset = dataset


class BadImageWarning(UserWarning):
    """A bad image was replaced by the next readable one (``skip_bad_images=True``)."""


class ImageFiles:
    """Mixin of datasets whose samples are image files: decoding, bad-image policy and ``__getitem__``.

    The class using it sets ``samples`` (``[(path or member, class index)]``), ``transform`` and
    ``target_transform``, calls :meth:`init_bad_images`, and overrides :meth:`open_file` /
    :meth:`image_source` when samples are not plain file paths (zip members).

    With ``skip_bad_images=True`` a bad sample ``i`` is replaced by the first readable one of ``i+1, i+2, ...``
    (wrapping around), image *and* label, so the pair stays consistent and the choice depends on ``i`` only.
    Replaced indices are recorded in ``bad_images`` and warned about once (:class:`BadImageWarning`). The record
    is per process: with DataLoader workers each worker keeps its own copy, so the main process's
    ``bad_images`` only holds what it decoded itself; :func:`~exaug.data.check_images` gives the full list.
    """

    samples: list[tuple[str, int]]
    transform: Callable[[Image.Image], Any] | None
    target_transform: Callable[[int], Any] | None
    skip_bad_images: bool
    bad_images: set[int]

    def init_bad_images(self, skip_bad_images: bool) -> None:
        """Set the bad-image policy (call from ``__init__``)."""
        if not isinstance(skip_bad_images, bool):
            raise ValueError(f"skip_bad_images must be a bool, got {skip_bad_images!r}")
        self.skip_bad_images = skip_bad_images
        self.bad_images = set()

    def image_source(self, index: int) -> str:
        """Where sample ``index`` is read from, as named in messages: a file path (zip: ``"<zip>:<member>"``)."""
        return os.fspath(self.samples[index][0])

    def open_file(self, index: int) -> str | IO[bytes]:
        """A path or binary file object PIL can open for sample ``index`` (may raise ``OSError``)."""
        return self.samples[index][0]

    def _bad(self, index: int, err: BaseException) -> BadImageError:
        source, dataset = self.image_source(index), describe_dataset(self)
        reason = f"{type(err).__name__}: {err}"
        return BadImageError(f"cannot decode image {source!r} (sample {index} of {dataset}): {reason}. {_FIX}",
                             source=source, dataset=dataset)

    def load(self, index: int) -> Image.Image:
        """Decode sample ``index`` as an RGB image (no transform, no replacement).

        Raises:
            BadImageError: the file cannot be read or decoded (corrupt, truncated, empty, not an image).
        """
        self.samples[index]  # an out-of-range index stays an IndexError, not a bad image
        try:
            with Image.open(self.open_file(index)) as image:
                return image.convert("RGB")
        # PIL raises many types on malformed bytes (OSError, SyntaxError, ValueError, struct.error, ...), and a
        # zip member can fail its CRC: at this boundary every failure means "this file is unreadable".
        except Exception as err:  # noqa: BLE001
            raise self._bad(index, err) from err

    def check_image(self, index: int) -> str | None:
        """Why sample ``index`` is unreadable, or ``None`` when it decodes.

        Cheaper than :meth:`load` and stricter: ``verify()`` checks the container (PNG chunk checksums), then
        the pixels are decoded in draft mode (JPEG at 1/8 scale, which still reads the whole stream, so a
        truncated file is caught).
        """
        try:
            handle = self.open_file(index)
            with Image.open(handle) as image:
                image.verify()
            if not isinstance(handle, str):
                handle.seek(0)  # read once, decode twice: a zip member is not read and inflated again
            with Image.open(handle) as image:
                image.draft("RGB", (1, 1))
                image.load()
        except Exception as err:  # noqa: BLE001 (see load)
            return f"{type(err).__name__}: {err}"
        return None

    def load_readable(self, index: int) -> tuple[Image.Image, int]:
        """``(image, index used)``: sample ``index``, or with ``skip_bad_images`` the next readable one.

        Raises:
            BadImageError: the image is bad and ``skip_bad_images`` is off, or no image of the dataset is readable.
        """
        n = len(self.samples)
        index = range(n)[index]  # normalises negative indices, IndexError when out of range
        for step in range(n):
            candidate = (index + step) % n
            if self.skip_bad_images and candidate in self.bad_images:
                continue
            try:
                return self.load(candidate), candidate
            except BadImageError as err:
                if not self.skip_bad_images:
                    raise
                self.bad_images.add(candidate)
                warnings.warn(f"{err} Skipped (skip_bad_images=True): the next readable image is used.",
                              BadImageWarning, stacklevel=3)
        raise BadImageError(f"no readable image in {describe_dataset(self)}: all {n} are bad. {_FIX}",
                            dataset=describe_dataset(self))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, used = self.load_readable(index)
        target: Any = self.samples[used][1]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

