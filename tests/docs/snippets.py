"""Extract the fenced ``python`` / ``bash`` blocks of Markdown pages, with their ``<!-- snippet: ... -->`` markers.

A page controls how its blocks are run with HTML comments on the lines right above the fence (invisible on GitHub
and on the docs site). One directive per comment:

- ``<!-- snippet: skip REASON -->``: not run; REASON says why (a GPU, the CIFAR zip, a network, hours of compute).
- ``<!-- snippet: name=NAME -->``: names the block so that a later block can continue it.
- ``<!-- snippet: after=NAME -->``: runs after block NAME of the same page (python: in the same namespace, the code
  of NAME and of what NAME continues runs first; bash: in the folder NAME left behind).
- ``<!-- snippet: shrink exaug train --epochs 1 ... -->``: bash only; the flags are appended to every command that
  starts with ``exaug train`` (argparse keeps the last value, so they override the documented ones).
- ``<!-- snippet: replace OLD NEW -->``: replaces the text OLD by NEW (shell quoting) to shrink a run (python and
  bash; in bash before the shrink flags are appended).
- ``<!-- snippet: run=PATH -->``: the block reads a trained run at PATH (relative to its folder): the test puts a
  copy of one tiny trained run there (``exaug train`` on synthetic data, 1 epoch).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

LANGUAGES = ("python", "bash")
_FENCE = re.compile(r"^(`{3,})(\S*)(?:\s.*)?$")  # an info string may follow: ```python title="x.py"
_MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")


@dataclass
class Snippet:
    """One fenced block and the directives of the markers above it."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    name: str | None = None
    after: str | None = None
    skip: str | None = None
    shrink: list[tuple[str, list[str]]] = field(default_factory=list)
    replace: list[tuple[str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def _apply_marker(snippet: Snippet, text: str) -> None:
    key, _, rest = text.partition(" ")
    if key == "skip":
        if not rest.strip():
            raise ValueError(f"{snippet.id}: a skip marker needs a reason")
        snippet.skip = rest.strip()
    elif key.startswith("name="):
        snippet.name = key[len("name="):]
    elif key.startswith("run="):
        snippet.runs.append(key[len("run="):])
    elif key.startswith("after="):
        snippet.after = key[len("after="):]
    elif key == "shrink":
        words = shlex.split(rest)
        if len(words) < 3 or words[0] != "exaug" or not words[2].startswith("-"):
            raise ValueError(f"{snippet.id}: shrink takes 'exaug COMMAND --flag ...', got {rest!r}")
        snippet.shrink.append((" ".join(words[:2]), words[2:]))
    elif key == "replace":
        words = shlex.split(rest)
        if len(words) != 2:
            raise ValueError(f"{snippet.id}: replace takes OLD NEW, got {rest!r}")
        snippet.replace.append((words[0], words[1]))
    else:
        raise ValueError(f"{snippet.id}: unknown snippet marker {text!r}")


def extract(page: Path) -> list[Snippet]:
    """The ``python`` and ``bash`` blocks of ``page`` in order, with their markers applied."""
    lines = page.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ValueError(f"{page.name}:{i + 1}: unclosed code fence")
        if language in LANGUAGES:
            snippet = Snippet(page, i + 1, language, "\n".join(lines[i + 1:end]) + "\n")
            markers = []
            j = i - 1
            while j >= 0 and _MARKER.match(lines[j]):
                markers.append(_MARKER.match(lines[j]).group(1))
                j -= 1
            for text in reversed(markers):
                _apply_marker(snippet, text)
            snippets.append(snippet)
        i = end + 1
    return snippets


def replaced_code(snippet: Snippet) -> str:
    """The block's code with its ``replace`` markers applied (each OLD must occur in the block)."""
    code = snippet.code
    for old, new in snippet.replace:
        if old not in code:
            raise ValueError(f"{snippet.id}: replace marker: {old!r} is not in the block")
        code = code.replace(old, new)
    return code


def python_source(snippet: Snippet, page_snippets: list[Snippet]) -> str:
    """The code to run for a python block: what it continues (recursively), then its own code, shrunk."""
    named = {s.name: s for s in page_snippets if s.name}
    parts = []
    current: Snippet | None = snippet
    while current is not None:
        parts.append(replaced_code(current))
        if current.after is None:
            break
        if current.after not in named:
            raise ValueError(f"{current.id}: after={current.after}: no block of that name on the page")
        current = named[current.after]
    return "\n".join(reversed(parts))


def _strip_comment(line: str) -> str:
    # Trailing "# ..." comments of documented commands (preceded by whitespace, outside quotes in our pages).
    return re.sub(r"\s+#\s.*$", "", line)


def bash_source(snippet: Snippet) -> str:
    """The block's commands (replace markers applied) with the shrink flags appended to every matching command."""
    code = replaced_code(snippet)
    if not snippet.shrink:
        return code
    out: list[str] = []
    logical: list[str] = []
    for line in code.splitlines():
        logical.append(line)
        if line.rstrip().endswith("\\"):
            continue
        command = " ".join(part.rstrip().rstrip("\\").strip() for part in logical)
        for prefix, flags in snippet.shrink:
            if command.startswith(prefix + " ") or command == prefix:
                logical[-1] = _strip_comment(logical[-1]) + " " + shlex.join(flags)
        out.extend(logical)
        logical = []
    out.extend(logical)
    return "\n".join(out) + "\n"
