"""``exaug evaluate`` and ``exaug compare``.

Exit codes: 0 success; 2 bad usage (missing run folder, unknown metric / explainer / option, bad split);
1 the run cannot be evaluated (missing or corrupt checkpoint); 130 interrupted (handled by ``exaug.cli.main``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_compare_parser", "add_evaluate_parser", "add_parser", "parse_options", "run_compare", "run_evaluate"]


def _metrics_help() -> str:
    from .evaluate import METRICS

    return "all, or a comma-separated list of: " + ", ".join(METRICS) + " (default: all)"


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug evaluate`` on an ``argparse`` sub-parser collection."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run: accuracy, explanation quality, calibration, robustness; writes eval.md",
        description=(
            "Evaluate a run folder written by `exaug train` and write eval.json, eval.md and figures\n"
            "(default: <run>/eval). See docs/evaluation.md.\n\n"
            "Example:\n"
            "  exaug evaluate --run runs/exconb --metrics accuracy,drop_increase,calibration --samples 1000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder (the --out of `exaug train`)")
    parser.add_argument("--metrics", default="all", help=_metrics_help())
    parser.add_argument("--explainer", default=None, metavar="NAME",
                        help="saliency backend (see `exaug explainers`; default: the run's own, at its layer)")
    parser.add_argument("--explainer-layer", default=None, metavar="PATH",
                        help="target layer of a CAM explainer, dotted path in encoder + classifier "
                             "(default: the run's resolved layer)")
    parser.add_argument("--split", default="test", help="dataset split: test or train (default: test)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="evaluate a seeded, class-balanced subset of N images (default: the whole split)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: <run>/eval)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto (default: cpu)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help="which weights: best (highest val top-1), last, or a .pt file (default: best)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random perturbations, PGD start and noise corruptions (default: 0)")
    parser.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="change a metric setting, repeatable, e.g. --option calibration.severity=5 --option "
                             "infidelity.normalize=True --option drop_increase.keep_fractions=0.3,0.45 "
                             "(names: exaug.evaluation.evaluate.DEFAULT_OPTIONS)")
    parser.add_argument("--include-validation", action="store_true",
                        help="also score the test images the run validated on (by default they are left out when "
                             "the run validated on a test subset, --eval-samples, because its best checkpoint was "
                             "chosen on them)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_evaluate)
    return parser


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug compare`` on an ``argparse`` sub-parser collection."""
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs side by side (mean ± std over seeds of each method)",
        description=(
            "Print a Markdown table with one row per method: test top-1, drop / increase, infidelity, ECE clean\n"
            "and under FGSM (from each run's eval/eval.json), best val top-1 and training stability across seeds.\n\n"
            "Example:\n"
            "  exaug compare runs/supcon-s0 runs/supcon-s1 runs/exconb-s0 runs/exconb-s1 --out runs/compare"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument("--out", default=None, metavar="DIR", help="also write compare.md and compare.json here")
    parser.set_defaults(func=run_compare)
    return parser


def add_parser(subparsers: Any) -> None:
    """Register both ``exaug evaluate`` and ``exaug compare``."""
    add_evaluate_parser(subparsers)
    add_compare_parser(subparsers)


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["calibration.severity=5", ...]`` -> ``{"calibration": {"severity": 5}}``.

    Values are Python literals (``5``, ``0.3,0.45``, ``True``, ``None``, ``'blur'``); anything else is a string.
    Names are checked by :func:`~exaug.evaluation.evaluate.resolve_options`.
    """
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"--option {item!r} must look like METRIC.KEY=VALUE, e.g. calibration.severity=5")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        options.setdefault(section, {})[key] = value
    return options


def _error(command: str, err: BaseException) -> None:
    print(f"exaug {command}: error: {err}", file=sys.stderr)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``exaug evaluate``; returns the exit code."""
    from ..utils.checkpoint import CheckpointError
    from .evaluate import evaluate_run

    try:
        result = evaluate_run(
            args.run, metrics=args.metrics, explainer=args.explainer, split=args.split, samples=args.samples,
            out=args.out, device=args.device, batch_size=args.batch_size, progress=not args.quiet,
            checkpoint=args.checkpoint, explainer_layer=args.explainer_layer, seed=args.seed,
            options=parse_options(args.option), held_out=False if args.include_validation else None,
        )
    except (FileNotFoundError, ValueError) as err:
        _error("evaluate", err)
        return 2
    except CheckpointError as err:
        _error("evaluate", err)
        return 1
    out = Path(args.out) if args.out is not None else Path(args.run) / "eval"
    files = "eval.json, eval.md" + "".join(f", {f}" for f in result["figures"].values())
    print(f"evaluated {result['evaluation']['images']} images in {result['timing']['total_seconds']:.1f} s; "
          f"wrote {files} to {out}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Run ``exaug compare``: print the table (and write it with ``--out``); returns the exit code."""
    from .compare import compare_runs

    try:
        text = compare_runs(args.runs, out=args.out)
    except (FileNotFoundError, ValueError) as err:
        _error("compare", err)
        return 2
    print(text, end="")
    if args.out is not None:
        print(f"\nwrote compare.md and compare.json to {args.out}")
    return 0
