"""Output helpers shared by ``evaluate`` and ``compare``: Markdown tables, number formatting, atomic JSON and text
writing, package versions."""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from pathlib import Path
from typing import Any, Sequence

__all__ = ["fmt", "jsonable", "md_table", "versions", "write_json", "write_text"]


def fmt(value: Any, digits: int = 3, *, scale: float = 1.0, scientific: bool = False) -> str:
    """``value * scale`` with ``digits`` decimals (or significant digits in scientific notation); ``n/a`` for None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = float(value) * scale
    return f"{value:.{digits}e}" if scientific else f"{value:.{digits}f}"


def jsonable(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively through dicts (what ``json.load`` gives back).

    Example:
        >>> jsonable({"ks": (1, 5), "fill": "zero"})
        {'ks': [1, 5], 'fill': 'zero'}
    """
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    return value


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a GitHub-flavoured Markdown table (the first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def versions() -> dict[str, str | None]:
    """Python, platform and the versions of the packages that affect the numbers (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("exaug", "torch", "torchvision", "numpy", "captum", "kornia", "matplotlib", "scikit-learn"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (a reader never sees a half-written file)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
