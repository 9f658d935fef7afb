"""``exaug compare``: evaluated runs side by side (mean ± std over the seeds of each method), and the paired
differences ± SEM against a reference method.

Exit codes: 0 success; 2 bad usage (a folder that is not a run folder, the same folder twice, an unknown
``--reference``).
Errors are reported by :func:`exaug.cli.main` (see :mod:`exaug.cli.errors`).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs side by side (mean ± std over seeds of each method)",
        description=(
            "Print a Markdown table with one row per method: test top-1, drop / increase, infidelity, ECE clean\n"
            "and under FGSM (from each run's eval/eval.json), best val top-1 and training stability across seeds.\n"
            "Below it, each method's paired difference against --reference (runs paired by seed): mean ± SEM and\n"
            "the number of paired seeds; '~' marks a difference within 2 SEM (not significant).\n\n"
            "Example:\n"
            "  exaug compare runs/supcon-s0 runs/supcon-s1 runs/exconb-s0 runs/exconb-s1 --reference supcon"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument("--out", default=None, metavar="DIR", help="also write compare.md and compare.json here")
    parser.add_argument("--reference", default=None, metavar="METHOD",
                        help="method the others are paired with by seed (default: supcon when it is compared)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the table (and write it with ``--out``); returns the exit code."""
    from ..evaluation import compare_runs

    text = compare_runs(args.runs, out=args.out, reference=args.reference)
    print(text, end="")
    if args.out is not None:
        print(f"\nwrote compare.md and compare.json to {args.out}")
    return 0
