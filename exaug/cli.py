"""The ``exaug`` command line: ``exaug explainers``, ``exaug demo`` and friends.

Each subcommand lives in the module that implements it and contributes an ``add_parser(subparsers)`` function;
this file only wires them together, so ``exaug --help`` stays fast (heavy imports happen inside commands).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__


def _cmd_explainers(args: argparse.Namespace) -> int:
    from .explainers import describe_explainers

    described = describe_explainers()
    width = max(len(name) for name in described)
    for name, text in described.items():
        print(f"{name:<{width}}  {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    from . import demo, explain_cli
    from .evaluation import cli as evaluation_cli
    from .training import cli as train_cli

    parser = argparse.ArgumentParser(
        prog="exaug",
        description="Explanation-driven augmentation for PyTorch (ExCon/ExConB, EDDA, CGC, COCOA).",
    )
    parser.add_argument("--version", action="version", version=f"exaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    explainers = sub.add_parser("explainers", help="list the registered saliency backends")
    explainers.set_defaults(func=_cmd_explainers)
    train_cli.add_parser(sub)
    evaluation_cli.add_parser(sub)
    explain_cli.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``exaug`` console script; returns the exit code."""
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
