"""``exaug demo``: one shared SupCon warm-up, then SupCon / ExCon / ExConB branches, on the CPU in a few minutes.

A SupCon run trains the warm-up epochs and stops; three branches start from its checkpoint (``init_from``: the
same weights, optimiser state, schedule position and data order) and finish the schedule: SupCon goes on
without explanations, ExCon and ExConB switch on Grad-CAM masks, so the branches differ only by the method.
The methods are designed for a classifier that recognises most masked images when the masks start, and the demo's
budget is chosen for that (:data:`DEMO_SETTINGS`): an easier task (6 shape classes), lighter random views, a
12-epoch warm-up, and masks from the last residual stage with a blurred fill (see the settings' comments for why
each departs from the paper). ``report.md`` compares the branches, shows the share of masks classified correctly
per epoch and masked views of both routed outcomes (:mod:`exaug.cli.demo_report`).

The demo's logic lives here, with its command, because it is an application (four training runs and a report),
not a building block: :func:`run_demo` is its Python entry point.

Exit codes: 0 success; 2 bad usage (bad ``--device``, ``--out`` is a file); 1 the run failed (a training run
diverged or could not write its folder); 130 interrupted. Errors are reported by :func:`exaug.cli.main` (see
:mod:`exaug.cli.errors`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .demo_report import explanation_quality, plot_curves, plot_masks, write_report
from .errors import usage_errors

__all__ = ["DEMO_SETTINGS", "QUICK_SETTINGS", "BRANCHES", "add_parser", "run", "run_demo"]

#: The demo's budget, for 2 CPU cores in under 5 minutes; ``exp_start_epoch`` is the length of the shared warm-up,
#: ``epochs`` the whole schedule (warm-up + branch). Chosen so that the warm-up classifier recognises most masked
#: images when explanations start: on seed 0 the warm-up ends at 88 % validation top-1 and 73 % of the masks are
#: classified correctly in the first explained epoch. In a probe of the same warm-up recipe (80 % top-1), the
#: paper's layer2 map with the dataset-mean fill got 17 % of its masks right; layer4 with the mean fill 32 %.
DEMO_SETTINGS: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"num_classes": 6},  # an easier task than all 10 shapes, for a strong classifier in minutes
    "model": "resnet18",
    "width": 0.25,
    "epochs": 14,  # 12 shared warm-up epochs + 2 per branch
    "batch_size": 64,
    "lr": 0.05,  # narrow networks collapse at SupCon's usual 0.1-0.5 with momentum 0.9
    "warmup_epochs": 1,
    "classifier_lr": 0.05,
    "temperature": 0.1,
    "exp_start_epoch": 12,
    "train_samples": 1536,
    "eval_samples": 1000,
    # SupContrast's views (crops of 20-100 %, colour jitter, grayscale) kept the SupCon loss near its collapsed
    # value for the whole warm-up at this budget; crops of 60-100 % without colour changes let it learn.
    "view_crop_min": 0.6,
    "view_colour": False,
    # The paper's 16x16 layer2 map keeps scattered pixels that the classifier rarely recognises; the last stage's
    # coarser map keeps whole regions, and a blurred fill (instead of the dataset mean) keeps the dropped pixels'
    # colours but not their shapes, which the classifier trained on whole images copes with.
    "explainer_layer": "encoder.layer4",
    "mask_fill": "blur",
    "views_on_device": True,  # batched Kornia views: the per-image CPU pipeline would dominate at this size
}
#: ``--quick``: the same pipeline in seconds (the suite runs it): half the width, a twelfth of the images.
QUICK_SETTINGS: dict[str, Any] = {"epochs": 2, "exp_start_epoch": 1, "train_samples": 128, "eval_samples": 64,
                                  "batch_size": 32, "width": 0.125}
#: The branches, in report order: the control first.
BRANCHES = ("supcon", "excon", "exconb")
_RUN_FILES = ("last.pt", "best.pt", "interrupted.pt", "summary.json", "metrics.jsonl", "metrics.csv", "config.json")


def run_demo(out: str | Path = "exaug-demo", *, quick: bool = False, device: str = "auto", seed: int = 0,
             quiet: bool = True) -> Path:
    """Train the shared warm-up and the three branches, then write the report; returns the path of ``report.md``.

    Args:
        out: output folder (created; the run folders inside it are trained afresh).
        quick: a much smaller budget (seconds), for smoke tests.
        device: ``"cpu"``, ``"cuda"``, ... or ``"auto"``.
        seed: seed of every run (the branches share the warm-up's, as branching requires).
        quiet: no per-epoch progress bars.
    """
    from ..data import SHAPE_NAMES
    from ..training import TrainConfig, Trainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**DEMO_SETTINGS, **(QUICK_SETTINGS if quick else {})}
    warm = settings["exp_start_epoch"]
    started = time.time()

    def train(method: str, folder: str, **options: Any) -> tuple[Any, dict[str, Any]]:
        run_dir = out / folder
        for name in _RUN_FILES:  # the demo always trains afresh, so the report matches this version of exaug
            (run_dir / name).unlink(missing_ok=True)
        config = TrainConfig(method=method, out=str(run_dir), device=device, seed=seed, quiet=quiet,
                             **settings, **options)
        trainer = Trainer(config)
        return trainer, trainer.fit()

    print(f"[exaug demo] shared supcon warm-up (epochs 1-{warm}) -> {out / 'warmup'}", flush=True)
    warmup, _ = train("supcon", "warmup", stop_after=warm)
    warmup.close()
    trainers: dict[str, Any] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for method in BRANCHES:
        print(f"[exaug demo] {method} branch (epochs {warm + 1}-{settings['epochs']}) -> {out / method}", flush=True)
        trainers[method], summaries[method] = train(method, method, init_from=str(out / "warmup"))
    branches = {method: trainer.history for method, trainer in trainers.items()}
    class_names = [SHAPE_NAMES[i] for i in range(trainers["exconb"].data.num_classes)]
    masks, *shown = plot_masks(trainers["exconb"], out / "masks.png", class_names)
    figures = {"curves": plot_curves(warmup.history, branches, out / "curves.png"), "masks": masks}
    quality = explanation_quality(trainers)
    report = write_report(out, {**settings, "seed": seed}, warmup.history, branches, summaries, quality, figures,
                          (shown[0], shown[1]), time.time() - started)
    for trainer in trainers.values():
        trainer.close()
    print(f"[exaug demo] report: {report}")
    return report


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug demo``."""
    parser = subparsers.add_parser("demo", help="a SupCon warm-up, then SupCon / ExCon / ExConB branches on built-in "
                                                "synthetic data; writes report.md",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="exaug-demo", help="output folder (default: ./%(default)s)")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (seconds), for smoke tests")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``exaug demo`` (:func:`run_demo`); returns the exit code."""
    from ..training.distributed import resolve_device

    with usage_errors():  # before minutes of training: a RuntimeError here is a wrong --device
        resolve_device(args.device)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise NotADirectoryError(f"--out {args.out!r} is a file, not a folder")
    run_demo(args.out, quick=args.quick, device=args.device, seed=args.seed, quiet=not args.progress)
    return 0
