"""CIFAR-10 on a CPU: SupCon / SupConOri / ExCon / ExConB, CE, EDDA and CGC on a fixed small budget, 3 seeds.

The ExCon paper's comparison scaled down to what 2 CPU cores finish in about 90 minutes: a CIFAR ResNet-18 of width
0.25, a seeded 3,000-image subset of the training set, 5 epochs at batch 64 (lr 0.5 scaled linearly to the batch,
as SupContrast does), temperature 0.1, Grad-CAM at the paper's layer2 for ExCon/ExConB. ExCon starts using
explanations at epoch 0 (the paper's bs-128 setting), ExConB after a quarter of the epochs (the paper's 50 of 200).
Each run is validated on a fixed 1,000-image subset of the test set every epoch, then evaluated on another 1,000
test images: top-1, drop / increase at keep 0.15 / 0.30 / 0.45, infidelity, ECE clean and under FGSM (4/255).

    python benchmarks/cifar10_cpu.py --jobs 2 --estimate-only    # time a few steps, print the estimated duration
    nohup python benchmarks/cifar10_cpu.py --jobs 2 > benchmarks/runs/cifar10_cpu.log 2>&1 &   # the study (resumable)
    python benchmarks/cifar10_cpu.py --quick --out /tmp/c10 --results-dir /tmp/res    # < 1 min smoke run
    python benchmarks/cifar10_cpu.py --submit slurm --slurm-partition cpu --wait      # one Slurm task per run

Before training, one epoch of every method is timed on a 2-batch subset and scaled to the budget, and the
estimate is printed (a warning when it exceeds ``--max-minutes``). Runs live in ``--out/<method>/seed<k>``: finished
runs are skipped, interrupted ones resume from ``last.pt``, so re-running the same command continues the study.
Results: ``<results-dir>/cifar10_cpu.json`` and ``cifar10_cpu.md`` (mean ± std over seeds, population std).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import add_submit_arguments, submit_grid  # noqa: E402
from common import table  # noqa: E402
from grid import (  # noqa: E402
    REPO, TABLE_LEGEND, GridRun, add_study_arguments, collect, evaluate_folder, finish_study_arguments, is_evaluated,
    metric_tables, run_in_process, summarise, timed_epoch, write_results,
)

from exaug.training import METHODS, TrainConfig  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
#: The study's methods, in table order: the paper's four, then cross-entropy and the other seeds' methods when the
#: trainer offers them.
STUDY_METHODS: tuple[str, ...] = tuple(m for m in ("supcon_ori", "supcon", "excon", "exconb", "ce", "edda", "cgc")
                                       if m in METHODS)
#: Methods whose per-epoch cost differs (``supcon_ori`` does the same work as ``supcon``: all encoder epochs, then
#: all classifier epochs with validation).
COST_CLASS = {"supcon_ori": "supcon"}
QUICK = {"methods": ["supcon", "exconb"], "seeds": 2, "epochs": 1, "train_samples": 32, "eval_samples": 16,
         "test_samples": 16, "batch_size": 16, "width": 0.0625}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"CIFAR-10 ImageFolder zip "
                        f"(train/<class>/*.jpg, test/<class>/*.jpg; default {DEFAULT_DATA})")
    parser.add_argument("--methods", nargs="+", default=list(STUDY_METHODS), choices=STUDY_METHODS)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-samples", type=int, default=1000, help="test images validated on every epoch")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    add_study_arguments(parser, name="cifar10_cpu", seeds=3, train_samples=3000, test_samples=1000, width=0.25,
                        max_minutes=90.0, quick_help="smoke run: 2 methods x 2 seeds x 1 epoch on a few "
                        "dozen images (synthetic data when the zip is missing), < 1 minute")
    add_submit_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # defaults only: `--quick --epochs 2` still means 2 epochs
    args = finish_study_arguments(parser, parser.parse_args(argv))
    args.data_options = dataset_options(args)
    return args


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """``dataset`` / ``data_root`` of the runs; a clear error when the zip is missing (quick mode: synthetic)."""
    if args.data.is_file():
        return {"dataset": "imagefolder-zip", "data_root": str(args.data.resolve())}
    if args.quick:
        print(f"note: {args.data} not found, --quick uses the synthetic dataset")
        return {"dataset": "synthetic", "data_root": None}
    raise SystemExit(f"cifar10_cpu: error: CIFAR-10 zip {str(args.data)!r} not found. Pass --data PATH to an "
                     "ImageFolder zip laid out as train/<class>/*.jpg and test/<class>/*.jpg (or use --quick).")


def start_epoch(method: str, epochs: int) -> int:
    """The paper's start epochs scaled to the budget: ExCon 0 (bs 128), ExConB 50 of 200 epochs."""
    return epochs // 4 if method == "exconb" else 0


def make_config(args: argparse.Namespace, method: str, seed: int, out: Path) -> TrainConfig:
    return TrainConfig(
        method=method, **args.data_options, model="resnet18", width=args.width, image_size=32,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, temperature=0.1,
        exp_start_epoch=start_epoch(method, args.epochs), train_samples=args.train_samples,
        eval_samples=args.eval_samples, workers=args.workers, device="cpu", seed=seed, quiet=True, out=str(out),
    )


def build_grid(args: argparse.Namespace) -> list[GridRun]:
    return [GridRun("cifar10", m, s, make_config(args, m, s, args.out / m / f"seed{s}"))
            for m in args.methods for s in range(args.seeds)]


def eval_options(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluation settings kept cheap on a CPU: a small kNN bank and no corruption sweep (FGSM stays)."""
    return {"accuracy": {"knn_train_samples": min(args.train_samples, 1000)}, "calibration": {"corruptions": ()}}


def estimate(args: argparse.Namespace, grid: Sequence[GridRun]) -> dict[str, Any]:
    """Time one epoch of each cost class on 2 batches and scale it to the budget (seconds).

    The 2-batch epoch validates on a proportional share of the validation images, so the whole epoch scales with
    the number of steps; the first steps include warm-up, which errs on the slow side.
    """
    steps_full = max(1, args.train_samples // args.batch_size)
    steps_calib = min(2, steps_full)
    scale = steps_full / steps_calib
    val_calib = max(1, round(args.eval_samples / scale))
    per_epoch: dict[str, float] = {}
    eval_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for cls in dict.fromkeys(COST_CLASS.get(r.method, r.method) for r in grid):
            config = make_config(args, cls, 0, Path(tmp) / cls)
            # Explanations from the first epoch: the costly path of excon/exconb is what gets timed.
            config = TrainConfig.from_dict({**config.to_dict(), "exp_start_epoch": 0, "epochs": 1,
                                            "train_samples": steps_calib * args.batch_size,
                                            "eval_samples": val_calib})
            per_epoch[cls] = timed_epoch(config) * scale
        probe = min(args.test_samples, 2 * args.batch_size)
        timing = evaluate_folder(Path(tmp) / next(iter(per_epoch)), probe, "cpu", eval_options(args))["timing"]
        # Loading, figures and the kNN bank (in "accuracy") do not grow with the number of evaluated images.
        per_image = sum(v for k, v in timing.items() if k not in ("total_seconds", "accuracy"))
        eval_seconds = timing["total_seconds"] + per_image * (args.test_samples / probe - 1)
    runs = {r.name: per_epoch[COST_CLASS.get(r.method, r.method)] * r.config.epochs + eval_seconds for r in grid}
    total = sum(runs.values())
    return {"seconds_per_epoch": per_epoch, "eval_seconds_per_run": eval_seconds, "seconds_per_run": runs,
            "total_seconds": total, "wall_seconds": max(total / args.jobs, max(runs.values(), default=0.0)),
            "jobs": args.jobs, "steps_per_epoch": steps_full, "threads": torch.get_num_threads()}


def print_estimate(info: dict[str, Any], args: argparse.Namespace, pending: Sequence[GridRun]) -> None:
    rows = [[m, f"{s:.1f}", f"{s * args.epochs / 60:.1f}"] for m, s in info["seconds_per_epoch"].items()]
    print(f"\nEstimated cost ({info['threads']} torch threads, {info['steps_per_epoch']} steps of {args.batch_size} "
          f"per epoch, timed on 2 steps):")
    print(table(rows, ["method", "s / epoch", "min / run (training)"]))
    total = info["wall_seconds"] / 60
    left = sum(info["seconds_per_run"][r.name] for r in pending) / 60 / args.jobs
    print(f"evaluation: {info['eval_seconds_per_run']:.0f} s per run; whole grid ({len(info['seconds_per_run'])} "
          f"runs, {args.jobs} at a time): about {total:.0f} min; still to do ({len(pending)} runs): about "
          f"{left:.0f} min")
    if total > args.max_minutes:
        print(f"WARNING: the estimate ({total:.0f} min) exceeds --max-minutes {args.max_minutes:g}; lower "
              "--train-samples or --epochs, or accept the longer run")


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_grid(grid: Sequence[GridRun], args: argparse.Namespace, timing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Train and evaluate every unfinished run, ``args.jobs`` at a time (longest first, so the jobs end together)."""
    options = eval_options(args)
    if args.jobs == 1:
        done = []
        for number, run in enumerate(grid, 1):
            print(f"[{number}/{len(grid)}] {run.name}", flush=True)
            done.append(run_in_process(run, args.test_samples, eval_options=options))
        return done
    cost = (timing or {}).get("seconds_per_run", {})
    ordered = sorted(grid, key=lambda r: -cost.get(r.name, 0.0))
    print(f"running {len(grid)} runs, {args.jobs} at a time with {args.threads} thread(s) each", flush=True)
    # spawn: a forked child would inherit the parent's OpenMP thread pool, which is not fork-safe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_init_worker,
                             initargs=(args.threads,)) as pool:
        futures = {run.name: pool.submit(run_in_process, run, args.test_samples, eval_options=options)
                   for run in ordered}
        return [futures[run.name].result() for run in grid]


def render(summary: dict[str, dict[str, Any]], args: argparse.Namespace, data: str) -> str:
    """The two tables (accuracy / calibration / stability, then explanation quality), mean ± std over seeds."""
    head = (f"CIFAR-10 ({data}), CIFAR ResNet-18 x{args.width}, {args.train_samples} training images, {args.epochs} "
            f"epochs, batch {args.batch_size}, lr {args.lr:g}, t 0.1; validated on {args.eval_samples} test images "
            f"(which choose the best checkpoint), evaluated on {args.test_samples} other test images.")
    return "\n".join(["# CIFAR-10 on CPU", "", head, "", metric_tables(summary), TABLE_LEGEND, ""])


def estimate_first(args: argparse.Namespace, grid: Sequence[Any], pending: Sequence[Any],
                   estimate_fn: Callable[[argparse.Namespace, Sequence[Any]], dict[str, Any]]) -> dict[str, Any] | None:
    """Time the study with ``estimate_fn`` and print the table, unless ``--no-estimate`` or nothing is pending."""
    if args.no_estimate or not (pending or args.estimate_only):
        return None
    timing = estimate_fn(args, grid)
    print_estimate(timing, args, pending)
    return timing


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    grid = build_grid(args)
    data = args.data_options["dataset"]
    pending = [r for r in grid if not is_evaluated(r.folder)]
    timing = estimate_first(args, grid, pending, estimate)
    if args.estimate_only:
        return {"estimate": timing}
    started = time.time()
    if args.submit:
        # One task per run on the cluster; without --wait the tables come from running this command again.
        jobs = submit_grid(grid, args, folder=args.submit_folder or args.out / "submitit", gpus_per_task=0,
                           eval_samples=args.test_samples, eval_options=eval_options(args))
        if not args.wait and jobs:
            print("tables: run the same command without --submit once the tasks are done (finished runs are "
                  "skipped)")
            return {"jobs": jobs}
        done = [{"run": r.name, "submitted": True} for r in grid]
    else:
        done = run_grid(grid, args, timing)
    records: dict[str, list[dict[str, Any]]] = {}
    for run in grid:
        records.setdefault(run.method, []).append(collect(run.folder))
    summary = {method: summarise(recs) for method, recs in records.items()}
    text = render(summary, args, data)
    print("\n" + text)
    budget = {k: getattr(args, k) for k in ("epochs", "train_samples", "eval_samples", "test_samples", "batch_size",
                                            "lr", "width", "seeds", "methods", "quick", "jobs", "threads")}
    paths = write_results(args.results_dir, "cifar10_cpu", {
        "budget": budget, "dataset": data, "estimate": timing, "wall_seconds": time.time() - started,
        "run_seconds": {stage: sum(r[f"{stage}_seconds"] or 0.0 for recs in records.values() for r in recs)
                        for stage in ("train", "eval")},
        "done": done, "methods": summary, "runs": {m: [r["folder"] for r in recs] for m, recs in records.items()},
    }, text)
    print(f"wrote {paths[0]} and {paths[1]}")
    return {"methods": summary, "estimate": timing, "paths": [str(p) for p in paths]}


if __name__ == "__main__":
    main()
