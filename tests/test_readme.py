"""The README's drop-in snippet is complete: it is extracted and run as is."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_drop_in_snippet_defines_every_name_and_runs(capsys):
    section = README.read_text().split("## Drop ExConB into a SupCon loop", 1)[1].split("\n## ", 1)[0]
    blocks = python_blocks(section)
    assert len(blocks) == 1
    namespace: dict = {"__name__": "readme"}  # nothing predefined: every name must come from the snippet
    exec(compile(blocks[0], str(README), "exec"), namespace)
    loss = namespace["loss"]
    assert loss.ndim == 0 and bool(loss.isfinite())
    assert re.fullmatch(r"loss \d+\.\d{3}\n", capsys.readouterr().out)
