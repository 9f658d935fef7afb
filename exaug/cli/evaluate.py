"""``exaug evaluate``: accuracy, explanation quality, calibration and robustness of a trained run.

Exit codes: 0 success; 2 bad usage (missing run folder, unknown metric / explainer / option, bad split or
device); 1 the run cannot be evaluated (missing, corrupt or unsafe checkpoint: a checkpoint holding arbitrary Python
objects is refused unless ``--trust-checkpoint``); 130 interrupted. Errors are reported by
:func:`exaug.cli.main` (see :mod:`exaug.cli.errors`).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from .options import add_option_argument, options_by_section
from .trust import add_trust_argument

__all__ = ["add_parser", "run"]


def _metrics_help() -> str:
    from ..evaluation import METRICS

    return "all, or a comma-separated list of: " + ", ".join(METRICS) + " (default: %(default)s)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug evaluate``."""
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
    parser.add_argument("--split", default="test", help="dataset split: test or train (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="evaluate a seeded, class-balanced subset of N images (default: the whole split)")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: <run>/eval)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto (default: %(default)s)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help="which weights: best (highest val top-1), last, or a .pt file (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random perturbations, PGD start and noise corruptions "
                             "(default: %(default)s)")
    add_option_argument(parser, "change a metric setting (names: exaug.evaluation.evaluate.DEFAULT_OPTIONS)",
                        metavar="METRIC.KEY=VALUE", example="calibration.severity=5 --option "
                        "infidelity.normalize=true --option drop_increase.keep_fractions=[0.3,0.45]")
    parser.add_argument("--include-validation", action="store_true",
                        help="also score the test images the run validated on (by default they are left out when "
                             "the run validated on a test subset, --eval-samples, because its best checkpoint was "
                             "chosen on them)")
    add_trust_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Evaluate the run, write ``eval.json`` / ``eval.md`` / figures and print where; returns the exit code."""
    from ..evaluation import evaluate_run
    from ..utils.checkpoint import trusted_checkpoints

    trust = trusted_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        result = evaluate_run(
            args.run, metrics=args.metrics, explainer=args.explainer, split=args.split, samples=args.samples,
            out=args.out, device=args.device, batch_size=args.batch_size, progress=not args.quiet,
            checkpoint=args.checkpoint, explainer_layer=args.explainer_layer, seed=args.seed,
            options=options_by_section(args.option), held_out=False if args.include_validation else None,
        )
    out = Path(args.out) if args.out is not None else Path(args.run) / "eval"
    files = "eval.json, eval.md" + "".join(f", {f}" for f in result["figures"].values())
    print(f"evaluated {result['evaluation']['images']} images in {result['timing']['total_seconds']:.1f} s; "
          f"wrote {files} to {out}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0
