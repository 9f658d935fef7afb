"""Helpers shared by the data tests: tiny image files written with PIL."""

from __future__ import annotations

import io

import pytest
from PIL import Image


def image_bytes(color: tuple[int, int, int], size: int = 8, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """Encoded ``size x size`` single-colour image."""
    buffer = io.BytesIO()
    Image.new(mode, (size, size), color if mode == "RGB" else color[0]).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def make_image():
    return image_bytes
