"""docs/architecture.md lists every module of the package, one line each, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 450  # lines per module: one concept per module


def listed() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return re.findall(r"^- `(exaug/[\w/]+\.py)`: \S", text, flags=re.MULTILINE)


def test_every_module_is_listed_once_and_nothing_else():
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "exaug").rglob("*.py"))
    entries = listed()
    assert len(entries) == len(set(entries)), "a module is listed twice"
    assert sorted(entries) == modules


def test_no_module_is_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "exaug").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT}
    assert not long, f"modules over {LIMIT} lines: {long}"
