"""Which file and member names may become classes or samples, and how a dataset is named in messages.

Archives made on macOS carry ``__MACOSX/`` folders and ``._x.jpg`` AppleDouble files (resource forks that look like
images by their extension but are not); folders collect ``.DS_Store``, ``.ipynb_checkpoints`` and the like; a
hostile or broken zip can hold members named ``../x.jpg`` or ``/etc/x.jpg``. None of them is a class or an image.
The folder datasets skip them and say so once, with a count, through :class:`SkippedEntriesWarning`.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Sequence

__all__ = ["SkippedEntriesWarning", "describe_dataset", "entry_problem", "warn_skipped"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_EXAMPLES = 3


class SkippedEntriesWarning(UserWarning):
    """Hidden or unsafe folder entries / zip members were left out of a dataset (filter it to silence)."""


def entry_problem(path: str) -> str | None:
    """Why a relative entry name must not become a class or a sample, or ``None`` when it is fine.

    Args:
        path: a zip member name or a path relative to the dataset root, ``/``-separated.

    Returns:
        ``"unsafe"`` for absolute names (``/x``, ``C:x``) and names with a ``.`` / ``..`` component or a
        backslash (a traversal on Windows); ``"hidden"`` for names with a component starting with ``.``
        (``.DS_Store``, ``._x.jpg``, ``.git/``) or named ``__MACOSX``; else ``None``.

    Example:
        >>> [entry_problem(n) for n in ("train/cat/a.jpg", "../a.jpg", "__MACOSX/train/cat/._a.jpg", "/a.jpg")]
        [None, 'unsafe', 'hidden', 'unsafe']
    """
    parts = path.split("/")
    if path.startswith("/") or _DRIVE.match(path) or any(p in (".", "..") or "\\" in p for p in parts):
        return "unsafe"
    # Empty parts come from a trailing "/" (a directory member) or "a//b": not hidden, just empty.
    if any(p.startswith(".") or p == "__MACOSX" for p in parts if p):
        return "hidden"
    return None


def describe_dataset(dataset: Any) -> str:
    """One line naming ``dataset`` in messages: its type, split and location (zip file or root folder)."""
    where = getattr(dataset, "zip_path", None) or getattr(dataset, "root", None)
    split = getattr(dataset, "split", None)
    text = type(dataset).__name__
    if split is not None:
        text += f" split {split!r}"
    if where is not None:
        text += f" of {os.fspath(where)!r}"
    return text


def warn_skipped(where: str, skipped: Sequence[str]) -> None:
    """One :class:`SkippedEntriesWarning` that counts ``skipped`` entries of ``where`` (nothing when empty)."""
    if not skipped:
        return
    hidden = sum(entry_problem(name) == "hidden" for name in skipped)
    examples = ", ".join(repr(name) for name in list(skipped)[:_EXAMPLES])
    more = ", ..." if len(skipped) > _EXAMPLES else ""
    warnings.warn(
        f"{where}: skipped {len(skipped)} hidden or unsafe entr{'y' if len(skipped) == 1 else 'ies'} "
        f"({hidden} hidden, {len(skipped) - hidden} unsafe), e.g. {examples}{more}. Hidden names start with '.' "
        "or are '__MACOSX'; unsafe ones are absolute or have a '.' / '..' component. None of them became a class "
        "or an image.",
        SkippedEntriesWarning,
        stacklevel=3,
    )
