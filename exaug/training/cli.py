"""``exaug train``: the trainer from the command line (also under ``torchrun -m exaug train``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import METHODS, add_config_arguments, config_from_args


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug train`` on an ``argparse`` sub-parser collection."""
    from .trainer import describe_methods

    descriptions = describe_methods()
    methods = "\n".join(f"  {m:<11} {descriptions[m]}" for m in METHODS)
    parser = subparsers.add_parser(
        "train",
        help="train SupCon / ExCon / ExConB / CE (the ExCon paper's Algorithm 1)",
        description=(
            "Train an encoder with a contrastive (or cross-entropy) objective and a linear classifier.\n"
            f"Methods:\n{methods}\n\n"
            "Example (paper recipe, CIFAR-100, ExConB):\n"
            "  exaug train --method exconb --dataset cifar100 --data-root ~/data --model resnet50 --epochs 200 \\\n"
            "      --batch-size 256 --lr 0.5 --temperature 0.1 --exp-start-epoch 50 --seed 1 --out runs/x\n"
            "Multi-GPU: torchrun --nproc_per_node=4 -m exaug train ..."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``exaug train``; returns the exit code (130 when interrupted, 1 when training diverged)."""
    from ..utils.checkpoint import CheckpointError
    from .trainer import Trainer, TrainingDiverged

    try:
        config = config_from_args(args)
        trainer = Trainer(config)
    except (ValueError, FileNotFoundError, CheckpointError, RuntimeError) as err:
        print(f"exaug train: error: {err}", file=sys.stderr)
        return 2
    try:
        summary = trainer.fit()
    except (TrainingDiverged, CheckpointError, FileExistsError) as err:
        print(f"exaug train: error: {err}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    if trainer.ctx.is_main:
        best = summary.get("best_val_top1")
        best_text = "n/a" if best is None else f"{best:.2f}"
        print(f"{summary['status']}: best val top-1 {best_text}, results in {summary['out']}")
    return 130 if summary["status"] == "interrupted" else 0
