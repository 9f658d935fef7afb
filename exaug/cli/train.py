"""``exaug train``: the reference trainer from the command line (also under ``torchrun -m exaug train``).

Exit codes: 0 finished (``--check-data``: every image readable); 2 bad usage (unknown method / dataset / model,
missing data, an unreadable image in the first batch or a class only in the test split, bad device or
``--config`` file: everything raised while building the run from the arguments; also an unknown explainer or
``--option``); 1 the run failed (training diverged, ``TrainingDiverged``; a checkpoint could not be read,
validated or written; ``--resume`` with changed options and no ``--allow-changes``; the ``--out`` folder
already holds a run; ``--check-data`` found unreadable images); 130 interrupted (the trainer saves
``interrupted.pt``). Errors are reported by :func:`exaug.cli.main` (see :mod:`exaug.cli.errors`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .errors import usage_errors
from .options import add_option_argument
from .trust import add_trust_argument

__all__ = ["add_parser", "run"]


def _methods_text() -> str:
    """One line per training method, from the trainer's own descriptions."""
    from ..training import describe_methods

    described = describe_methods()
    width = max(len(name) for name in described)
    return "\n".join(f"  {name:<{width}}  {text}" for name, text in described.items())


class _DefaultOnce:
    """A parser proxy that keeps one default per help text.

    ``add_config_arguments`` appends ``(default: <value>)`` to every field's help, also where the help already
    states the default in words (``(default: --epochs)`` then ``(default: None)``): the appended one is dropped.
    """

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        head, appended, _ = (kwargs.get("help") or "").rpartition(" (default: ")
        if appended and "(default:" in head:
            kwargs["help"] = head
        return self._parser.add_argument(*names, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug train``."""
    from ..training.config import add_config_arguments

    parser = subparsers.add_parser(
        "train",
        help="train SupCon / ExCon / ExConB / CE / EDDA / CGC (the ExCon paper's Algorithm 1)",
        description=(
            "Train an encoder with a contrastive (or cross-entropy) objective and a linear classifier.\n"
            f"Methods (--method):\n{_methods_text()}\n\n"
            "Example (paper recipe, CIFAR-100, ExConB):\n"
            "  exaug train --method exconb --dataset cifar100 --data-root ~/data --model resnet50 --epochs 200 \\\n"
            "      --batch-size 256 --lr 0.5 --temperature 0.1 --exp-start-epoch 50 --seed 1 --out runs/x\n"
            "Branch from a warm-up (the first 10 of 20 SupCon epochs, then ExCon from the same state):\n"
            "  exaug train --method supcon --epochs 20 --stop-after 10 --out runs/warm ...\n"
            "  exaug train --method excon --epochs 20 --exp-start-epoch 10 --init-from runs/warm --out runs/excon ...\n"
            "Multi-GPU: torchrun --nproc_per_node=4 -m exaug train ..."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(_DefaultOnce(parser))  # type: ignore[arg-type]
    add_option_argument(parser, "explainer option, merged over the --config file's explainer_options",
                        example="relu=false")
    safety = parser.add_argument_group("resume and data checks")
    safety.add_argument("--allow-changes", action="store_true",
                        help="with --resume: apply options that differ from the checkpoint's (lr, batch size, seed, "
                             "...) and record them with their epoch in config.json and metrics.jsonl; without it "
                             "such a resume is refused with the list of differences")
    add_trust_argument(safety, "last.pt (with --resume) or the --init-from checkpoint")
    safety.add_argument("--check-data", action="store_true",
                        help="decode every image of the train and test splits, print a report and exit "
                             "(0: all readable, 1: some are not); no training")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` describe and print the outcome; returns the exit code."""
    from ..training import Trainer
    from ..training.config import config_from_args

    with usage_errors():
        config = config_from_args(args)
        if args.option:
            config = dataclasses.replace(config, explainer_options={**config.explainer_options, **dict(args.option)})
        if args.check_data:
            return _check_data(config)
        trainer = Trainer(config, allow_changes=args.allow_changes, trust_checkpoint=args.trust_checkpoint)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.ctx.is_main:
        best = summary.get("best_val_top1")
        best_text = "n/a" if best is None else f"{best:.2f}"
        print(f"{summary['status']}: best val top-1 {best_text}, results in {summary['out']}")
    return 130 if summary["status"] == "interrupted" else 0


def _check_data(config: Any) -> int:
    """``--check-data``: print one report per split; 0 when every image is readable, else 1."""
    from ..training.loaders import check_run_images

    reports = check_run_images(config, progress=not config.quiet)
    for report in reports:
        print(report)
    return 0 if all(report.ok for report in reports) else 1
