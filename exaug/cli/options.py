"""The ``--option KEY=VALUE`` grammar shared by every ``exaug`` command.

One parser for every command, so that ``relu=false``, ``n_masks=500`` or ``keep_fractions=[0.3,0.45]`` mean the
same thing everywhere. ``exaug evaluate`` keeps its ``METRIC.KEY=VALUE`` form: the same parser, then
:func:`options_by_section` splits the key at its first dot.

Grammar (also :data:`OPTION_GRAMMAR`, shown in each command's ``--help``):

* ``KEY`` is a name (letters, digits, ``_``; not starting with a digit), or dotted names (``calibration.severity``).
* ``VALUE`` is read as JSON first: ``500``, ``1e-3``, ``true``, ``null``, ``"blur"``, ``[0.3, 0.45]``, ``{"a": 1}``.
* If it is not JSON, as a Python literal: ``True``, ``False``, ``None``, ``'blur'``, ``(1, 2)``, and the bare
  comma list ``0.3,0.45`` (a tuple).
* Anything else is kept as the text itself, so ``baseline=blur`` gives the string ``"blur"``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import re
from typing import Any, Iterable

__all__ = ["OPTION_GRAMMAR", "add_option_argument", "options_by_section", "parse_option", "parse_value"]

#: The grammar in one paragraph, for help texts.
OPTION_GRAMMAR = (
    "KEY is a name such as n_masks; VALUE is JSON (500, 1e-3, true, null, \"blur\", [0.3,0.45]), else a Python "
    "literal (True, False, None, 'blur', 0.3,0.45), else the text itself (baseline=blur gives \"blur\")"
)

_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)


def parse_value(text: str) -> Any:
    """Read one ``VALUE`` of the grammar: JSON, else a Python literal, else the (stripped) text.

    Args:
        text: what follows the first ``=``.

    Returns:
        The value: ``bool``, ``None``, ``int``, ``float``, ``str``, ``list``, ``tuple`` or ``dict``.

    Example:
        >>> from exaug.cli.options import parse_value
        >>> parse_value("False"), parse_value("1e-3"), parse_value("[0.3,0.45]"), parse_value("blur")
        (False, 0.001, [0.3, 0.45], 'blur')
    """
    text = text.strip()
    with contextlib.suppress(ValueError):  # JSONDecodeError, or an integer past Python's digit limit
        return json.loads(text)
    try:
        # literal_eval only builds constants and containers: it never runs code.
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_option(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` at the first ``=`` and read the value with :func:`parse_value`.

    Meant as an ``argparse`` ``type=``: a malformed item is an :class:`argparse.ArgumentTypeError` (a usage error
    that names ``--option``).

    Args:
        text: one ``--option`` argument.

    Returns:
        ``(key, value)``.

    Raises:
        argparse.ArgumentTypeError: no ``=``, or ``KEY`` is not a (dotted) name.

    Example:
        >>> from exaug.cli.options import parse_option
        >>> parse_option('baseline="blur"'), parse_option("relu=false"), parse_option("title=a=b")
        (('baseline', 'blur'), ('relu', False), ('title', 'a=b'))
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"--option {text!r} must look like KEY=VALUE, e.g. n_masks=500")
    if not _KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(
            f"--option {text!r}: KEY must be a name of letters, digits and _ (dots separate a prefix), got {key!r}"
        )
    return key, parse_value(value)


def options_by_section(pairs: Iterable[tuple[str, Any]], *, example: str = "calibration.severity=5"
                       ) -> dict[str, dict[str, Any]]:
    """Group ``("SECTION.KEY", value)`` pairs as ``{SECTION: {KEY: value}}`` (``exaug evaluate``'s form).

    The key is split at its first dot; later pairs override earlier ones.

    Args:
        pairs: items from :func:`parse_option`.
        example: a correct item, quoted in the error message.

    Raises:
        ValueError: a key without a ``SECTION.`` prefix (the message names ``--option``).

    Example:
        >>> from exaug.cli.options import options_by_section, parse_option
        >>> options_by_section(map(parse_option, ["calibration.severity=5", "infidelity.normalize=True"]))
        {'calibration': {'severity': 5}, 'infidelity': {'normalize': True}}
    """
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in pairs:
        section, dot, key = name.partition(".")
        if not dot:
            raise ValueError(f"--option {name}={value!r} must look like METRIC.KEY=VALUE, e.g. {example}")
        grouped.setdefault(section, {})[key] = value
    return grouped


def add_option_argument(parser: argparse.ArgumentParser | Any, what: str, *, metavar: str = "KEY=VALUE",
                        example: str = "n_masks=500") -> None:
    """Add the repeatable ``--option`` (a list of ``(key, value)`` pairs in ``args.option``) to ``parser``.

    Args:
        parser: a parser or argument group.
        what: what the options change, for the help text (e.g. ``"explainer option"``).
        metavar: how the item looks in the usage line.
        example: one valid item, for the help text.
    """
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar=metavar,
                        help=f"{what}, repeatable, e.g. --option {example}. {OPTION_GRAMMAR}")
