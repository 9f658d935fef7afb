"""Helpers shared by the data tests: tiny image files written with PIL, good and bad, in folders or zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

#: The kinds of unreadable file the bad-image tests cover.
BAD_KINDS = ("corrupt", "truncated", "zero-byte", "text")


def image_bytes(color: tuple[int, int, int], size: int = 8, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """Encoded ``size x size`` single-colour image."""
    buffer = io.BytesIO()
    Image.new(mode, (size, size), color if mode == "RGB" else color[0]).save(buffer, format=fmt)
    return buffer.getvalue()


def bad_image_bytes(kind: str) -> bytes:
    """Bytes of an unreadable image file of ``kind`` (one of :data:`BAD_KINDS`)."""
    if kind == "corrupt":  # a PNG whose pixel data is overwritten: bad checksum, broken zlib stream
        data = bytearray(image_bytes((9, 9, 9), size=16))
        start = data.find(b"IDAT") + 4
        data[start : start + 8] = b"\xff" * 8
        return bytes(data)
    if kind == "truncated":  # the first half of a JPEG
        data = image_bytes((9, 9, 9), size=64, fmt="JPEG")
        return data[: len(data) // 2]
    if kind == "zero-byte":
        return b""
    if kind == "text":
        return b"this is a text file named like a picture\n"
    raise ValueError(f"unknown kind {kind!r}")


def write_layout(root: Path, files: dict[str, bytes], as_zip: bool) -> Path:
    """Write ``{relative name: bytes}`` under ``root`` as a folder tree, or into ``root.zip``; returns the path
    ``build_dataset`` takes (the folder or the zip)."""
    if as_zip:
        path = root.with_suffix(".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return path
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def make_image():
    return image_bytes
