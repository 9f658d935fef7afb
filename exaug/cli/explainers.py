"""``exaug explainers [NAME ...]``: the registered saliency backends, one line each.

Exit codes: 0 success; 2 an unknown NAME (the message suggests the closest registered name).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug explainers``."""
    parser = subparsers.add_parser("explainers", help="list the registered saliency backends",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these backends (default: all)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print ``name  description`` per backend; returns the exit code."""
    from ..explainers import describe_explainers, explainer_uses_layer

    described = describe_explainers()
    for name in args.names:
        if name not in described:
            explainer_uses_layer(name)  # raises the registry's unknown-name error (valid names, closest match)
    names = args.names or list(described)
    width = max(len(name) for name in names)
    for name in names:
        print(f"{name:<{width}}  {described[name]}")
    return 0
