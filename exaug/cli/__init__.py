"""The ``exaug`` command line: ``exaug explainers``, ``train``, ``evaluate``, ``compare``, ``explain``, ``demo``.

Each subcommand is one module of this package with ``add_parser(subparsers)`` and ``run(args)``; this file wires
them together and is the one place where a failed command is reported (:func:`main`): a user error prints one
line ``exaug <cmd>: error: ...`` on stderr and returns exit code 2 (bad usage) or 1 (the run failed), as listed
in :mod:`exaug.cli.errors`; ``exaug --debug <cmd> ...`` re-raises instead, to show the traceback. ``--option
KEY=VALUE`` has one grammar for every command (:mod:`exaug.cli.options`). Heavy imports happen inside commands,
so ``exaug --help`` stays fast.

Threads (:mod:`exaug.utils.threads`): ``exaug --threads N COMMAND`` (``exaug train --threads N`` too) sets torch's
CPU threads, by default ``min(cores, 4)`` unless ``OMP_NUM_THREADS`` is exported. The commands that compute
(:data:`COMPUTE_COMMANDS`) also need ``OMP_WAIT_POLICY=PASSIVE`` so that OpenMP threads sleep instead of spinning
when other processes share the cores; libgomp reads it only when torch is first imported. ``import exaug`` does
not import torch (its names load on first use), so the process entry (``main()`` without ``argv``: the console
script, ``python -m exaug``, ``torchrun -m exaug``) sets the variables the user has not set before anything
imports torch. Should torch already be loaded there (a wrapper imported it first), :func:`main` re-executes the
process once with them set instead. ``main(argv)``, called from Python, never touches the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from ..utils.threads import REEXEC_MARK, OPENMP_ENV, openmp_env, reexec_command, resolve_threads, set_threads
from .errors import error_line, exit_code

__all__ = ["COMPUTE_COMMANDS", "build_parser", "main"]

#: The subcommand modules, in the order ``exaug --help`` lists them.
COMMANDS: tuple[str, ...] = ("explainers", "train", "evaluate", "compare", "explain", "demo")
#: The commands that run models, for which the process entry sets the OpenMP environment (module docstring).
COMPUTE_COMMANDS: tuple[str, ...] = ("train", "evaluate", "explain", "demo")


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
    parser.add_argument("--threads", type=_threads, default=argparse.SUPPRESS, metavar="N",
                        help="CPU threads of torch (default: min(cores, 4), or OMP_NUM_THREADS when set); the "
                             "commands that compute also set OMP_WAIT_POLICY=PASSIVE unless it is set, so idle "
                             "threads sleep instead of spinning on cores other processes use")
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
    if argv is None:
        _early_openmp_env(sys.argv[1:])  # before build_parser imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    threads = resolve_threads(getattr(args, "threads", None))
    if argv is None and args.command in COMPUTE_COMMANDS:
        _reexec_with_openmp_env(threads)
    set_threads(threads)
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


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of threads, got {text!r}")
    return value


def _early_openmp_env(args: Sequence[str]) -> None:
    """Export the missing OpenMP variables for a compute command, if torch is not loaded yet (no re-exec then).

    A light scan of the raw arguments (the command and a valid ``--threads N``); anything malformed is left for
    argparse to report.
    """
    if "torch" in sys.modules:
        return
    command = next((a for a in args if a in COMMANDS), None)
    if command not in COMPUTE_COMMANDS:
        return
    requested = None
    for i, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--threads=") else (
            args[i + 1] if arg == "--threads" and i + 1 < len(args) else None)
        if value is not None and value.isdigit() and int(value) > 0:
            requested = int(value)
    threads = requested if requested is not None else resolve_threads(None)
    os.environ.update(openmp_env(threads))


def _reexec_with_openmp_env(threads: int | None) -> None:
    """Replace this process by ``exaug`` with :data:`~exaug.utils.threads.OPENMP_ENV` set, once, if missing."""
    missing = openmp_env(threads)
    if REEXEC_MARK in os.environ or not any(key in OPENMP_ENV for key in missing):
        return
    command, env = reexec_command(sys.argv[1:], {**os.environ, **missing})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
