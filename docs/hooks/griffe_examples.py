"""Griffe extension for the docs build: read a Google-style ``Example:`` section as ``Examples:``.

exaug's docstrings use both spellings (Napoleon accepts both); griffe parses only ``Examples:`` as an examples
section and renders ``Example:`` as an admonition whose ``>>>`` lines become plain Markdown paragraphs. Renaming
the heading at load time keeps the sources untouched and renders every example as a code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class GoogleExampleSections(griffe.Extension):
    """Rewrite ``Example:`` section headings to ``Examples:`` in every loaded docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
