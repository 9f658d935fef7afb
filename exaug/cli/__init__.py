"""The ``exaug`` command line: ``exaug explainers``, ``train``, ``evaluate``, ``compare``, ``explain``, ``demo``.

Each subcommand is one module of this package with ``add_parser(subparsers)`` and ``run(args)``; this file wires
them together and is the one place where a failed command is reported (:func:`main`): a user error prints one
line ``exaug <cmd>: error: ...`` on stderr and returns exit code 2 (bad usage) or 1 (the run failed), as listed
in :mod:`exaug.cli.errors`; ``exaug --debug <cmd> ...`` re-raises instead, to show the traceback. ``--option
KEY=VALUE`` has one grammar for every command (:mod:`exaug.cli.options`). Heavy imports happen inside commands,
so ``exaug --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from .errors import error_line, exit_code

__all__ = ["build_parser", "main"]

#: The subcommand modules, in the order ``exaug --help`` lists them.
COMMANDS: tuple[str, ...] = ("explainers", "train", "evaluate", "compare", "explain", "demo")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, like every other ``exaug`` error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand.

    Example:
        >>> from exaug.cli import build_parser
        >>> args = build_parser().parse_args(["--debug", "compare", "runs/a", "runs/b"])
        >>> args.command, args.debug, args.runs
        ('compare', True, ['runs/a', 'runs/b'])
    """
    import importlib

    parser = _Parser(
        prog="exaug",
        description="Explanation-driven augmentation for PyTorch (ExCon/ExConB, EDDA, CGC, COCOA).",
        epilog="Errors are one line on stderr; exit codes: 0 success, 1 the run failed, 2 bad usage, "
               "130 interrupted. `exaug --debug COMMAND ...` shows the traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"exaug {__version__}")
    parser.add_argument("--debug", action="store_true", help="re-raise errors with their traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``exaug`` console script and of ``python -m exaug``; returns the exit code.

    Args:
        argv: the arguments after ``exaug`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when the run failed, 2 on bad usage, 130 when interrupted (see :mod:`exaug.cli.errors`).
        ``--help``, ``--version`` and argparse's own usage errors raise ``SystemExit`` as usual.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - exit_code() decides: bugs are re-raised with their traceback
        code = exit_code(err)
        if args.debug or code is None:
            raise
        print(error_line(args.command, err), file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
