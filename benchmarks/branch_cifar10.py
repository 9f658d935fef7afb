"""The branch study on CIFAR-10 (issue #15): methods compared from one shared warm-up per seed.

Per seed, a SupCon warm-up (Algorithm 1) trains the first ``W`` epochs of a ``W + B``-epoch schedule
(``stop_after``); from that identical checkpoint, data order and RNG state (``init_from``), branches train the last
``B`` epochs with SupCon, ExCon and ExConB (explanations on from epoch ``W``). A cross-entropy warm-up does the same
for CE and EDDA (occlusions on from epoch ``W``). The SupCon branch is, bit for bit, the uninterrupted SupCon run
(tests/training/test_branch.py), so every difference between branches is the method's effect on the same starting
point, not the warm-up's variance.

Reported: at branch time, the warm-up classifier's validation and held-out test top-1 and the share of its
explanation masks that it still classifies correctly (the ``tsne`` task: the run's own masks on test images; the
first branch epoch's ``masked_correct`` is the same share on training images); after the branches, per method mean ±
std and the paired differences against the family's reference branch (SupCon; CE for EDDA), mean ± SEM over seeds
(``~``: within 2 SEM): test top-1, drop / increase at keep 0.15 / 0.30 / 0.45, infidelity, insertion / deletion
AUC, ECE clean and under FGSM (4/255); and ExCon / ExConB's routing statistics per epoch (masks classified
correctly, kept area, background rows per batch), mean ± SEM. Every run is evaluated at its last checkpoint (the
branches all end after the same number of epochs; choosing "best" on validation would add selection noise).

Budget (the defaults): ExCon's masking, as the paper and its reference code (the ``reference`` explainer preset:
signed Grad-CAM at layer2, pixels above 0.5 of the min-max normalised map kept, the rest set to 0 in normalised
space, i.e. the dataset mean, true-label targets); CIFAR ResNet-18 x0.25 (as ``cifar10_cpu.py``), batch 64, lr
0.5 * 64 / 256, t 0.1; 2,500 training images, ``W = 10`` warm-up and ``B = 5`` branch epochs (a 15-epoch cosine),
5 seeds; validation on 500 test images, evaluation on 500 others (insertion / deletion with 16 steps). Per seed
that is 20 warm-up epochs, 25 branch epochs and 7 evaluations. ``--estimate-only`` (CPU time of 2-step epochs,
i.e. an idle machine) put it at 80 to 90 minutes with ``--jobs 2`` (two measurements), leaving room for the
optimism about two processes sharing memory bandwidth.
Why two thirds warm-up: ExCon's masks only become positives when the
masked image is classified correctly, so the classifier must be trained before the branches mean anything; 3,000
images or 12 warm-up epochs would exceed the budget (each warm-up epoch costs 2 x 5 epochs, each branch epoch 5 x
5). The price: the branches run on the tail of the cosine (lr from 0.25 to 0.001 of the peak), where any method's
effect is smaller. The branch-time table comes first: if few masks are classified correctly there, ExCon reroutes
most of them and the study tests that regime (``--warmup-epochs`` buys accuracy).

    python benchmarks/branch_cifar10.py --jobs 2 --estimate-only     # time a few steps, print the estimate table
    nohup python benchmarks/branch_cifar10.py --jobs 2 > benchmarks/runs/branch_cifar10.log 2>&1 &   # resumable
    python benchmarks/branch_cifar10.py --quick --out /tmp/br --results-dir /tmp/res    # synthetic, seconds

Runs live in ``--out/seed<k>/{warmup-supcon,warmup-ce,<method>}``; finished runs and evaluations are skipped,
interrupted ones resume from ``last.pt``, so re-running the command continues the study. Results:
``<results-dir>/branch_cifar10.json`` and ``branch_cifar10.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_cpu import DEFAULT_DATA, dataset_options, eval_options  # noqa: E402
from common import table  # noqa: E402
from grid import (  # noqa: E402
    GridRun, add_study_arguments, check_same_run, collect, finish_study_arguments, fit_config, is_evaluated,
    prepare_config, timed_epoch, write_results,
)

from exaug.evaluation import evaluate_run  # noqa: E402
from exaug.evaluation.compare import COMPARE_COLUMNS, paired_differences, summary_tables  # noqa: E402
from exaug.training import TrainConfig  # noqa: E402
from exaug.training.logger import read_metrics  # noqa: E402

#: Warm-up method -> the branches trained from it; the first branch is the family's reference.
FAMILIES: dict[str, tuple[str, ...]] = {"supcon": ("supcon", "excon", "exconb"), "ce": ("ce", "edda")}
WARMUP_METRICS = ("accuracy", "tsne")
BRANCH_METRICS = ("accuracy", "drop_increase", "infidelity", "insertion_deletion", "calibration")
ROUTING_KEYS = ("masked_correct", "kept_area", "background_per_batch")
#: ``(key, header, better, digits, scientific)`` of the branch tables (keys of :func:`branch_values`).
COLUMNS = (
    *(c for c in COMPARE_COLUMNS if c[0] in ("top1", "drop_percent", "increase_percent", "infidelity")),
    ("insertion_auc", "insertion AUC", "higher", 3, False), ("deletion_auc", "deletion AUC", "lower", 3, False),
    *(c for c in COMPARE_COLUMNS if c[0] in ("ece_clean", "ece_fgsm")),
)
QUICK = {"seeds": 2, "warmup_epochs": 1, "branch_epochs": 1, "train_samples": 32, "eval_samples": 16,
         "test_samples": 16, "batch_size": 16, "width": 0.0625, "insdel_steps": 4}


@dataclasses.dataclass(frozen=True)
class Job(GridRun):
    """One run of the study (a :class:`grid.GridRun`): a warm-up (``kind="warmup"``, method = family) or a branch
    of ``family``."""

    kind: str = "branch"
    family: str = "supcon"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"CIFAR-10 ImageFolder zip (train/<class>/"
                        f"*.jpg, test/<class>/*.jpg; default {DEFAULT_DATA})")
    parser.add_argument("--warmup-epochs", type=int, default=10, help="W: epochs of the shared warm-up")
    parser.add_argument("--branch-epochs", type=int, default=5, help="B: epochs of every branch after the warm-up")
    parser.add_argument("--eval-samples", type=int, default=500, help="test images validated on every epoch")
    parser.add_argument("--insdel-steps", type=int, default=16, help="steps of the insertion / deletion curves")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    add_study_arguments(parser, name="branch_cifar10", seeds=5, train_samples=2500, test_samples=500, width=0.25,
                        max_minutes=100.0, quick_help="smoke run on synthetic data: 2 seeds, 1 + 1 "
                        "epochs, a few dozen images (seconds)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # defaults only: `--quick --seeds 3` still means 3 seeds
    args = finish_study_arguments(parser, parser.parse_args(argv),
                                  ("seeds", "warmup_epochs", "branch_epochs", "jobs", "insdel_steps"))
    args.data_options = ({"dataset": "synthetic", "data_root": None} if args.quick else dataset_options(args))
    return args


def make_config(args: argparse.Namespace, method: str, seed: int, out: Path, **extra: Any) -> TrainConfig:
    """Every run of the study: the whole ``W + B``-epoch schedule; explanations / occlusions from epoch ``W``."""
    w = args.warmup_epochs
    values: dict[str, Any] = dict(
        method=method, **args.data_options, model="resnet18", width=args.width, image_size=32,
        epochs=w + args.branch_epochs, batch_size=args.batch_size, lr=args.lr, temperature=0.1,
        exp_start_epoch=w, edda_start_epoch=w, explainer="gradcam", explainer_preset="reference",
        mask_threshold=0.5, mask_fill="zero", mask_target="label", train_samples=args.train_samples,
        eval_samples=args.eval_samples, workers=args.workers, device="cpu", seed=seed, quiet=True, out=str(out),
    )
    return TrainConfig(**{**values, **extra})


def build_jobs(args: argparse.Namespace) -> tuple[list[Job], list[Job]]:
    """``(warm-ups, branches)`` of every seed."""
    warmups, branches = [], []
    for seed in range(args.seeds):
        root = args.out / f"seed{seed}"
        for family, methods in FAMILIES.items():
            warm = root / f"warmup-{family}"
            warmups.append(Job("cifar10", f"warmup-{family}", seed,
                               make_config(args, family, seed, warm, stop_after=args.warmup_epochs), "warmup", family))
            branches += [Job("cifar10", m, seed, make_config(args, m, seed, root / m, init_from=str(warm)), "branch",
                             family) for m in methods]
    return warmups, branches


def evaluation_options(args: argparse.Namespace) -> dict[str, Any]:
    """cifar10_cpu's cheap CPU settings, short insertion / deletion curves and few t-SNE points."""
    return {**eval_options(args), "insertion_deletion": {"steps": args.insdel_steps}, "tsne": {"max_images": 64}}


def pending_config(job: Job) -> TrainConfig | None:
    """The config to train ``job`` with (``resume=True`` when started), or ``None`` when its training is done."""
    if job.kind == "branch":
        return prepare_config(job.config)
    check_same_run(job.config)
    summary = job.folder / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") in ("stopped", "finished"):
        return None  # a stopped warm-up is complete: resuming it would only rewrite its files
    started = (job.folder / "last.pt").is_file() or (job.folder / "config.json").is_file()
    return dataclasses.replace(job.config, resume=started)


def run_job(job: Job, test_samples: int, options: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Train ``job`` unless done, then evaluate its last checkpoint unless evaluated."""
    if threads:
        torch.set_num_threads(threads)
    done: dict[str, Any] = {"run": job.name, "trained": False, "evaluated": False}
    config = pending_config(job)
    if config is not None:
        summary = fit_config(job.name, job.folder, config, log=partial(print, flush=True),
                             complete=("finished", "stopped"))  # a warm-up ends "stopped" after W epochs
        done.update(trained=True, train_seconds=summary["seconds"])
    if not is_evaluated(job.folder):
        started = time.time()
        metrics = WARMUP_METRICS if job.kind == "warmup" else BRANCH_METRICS
        evaluate_run(job.folder, list(metrics), samples=test_samples, device="cpu", progress=False,
                     checkpoint="last", options=options)
        done.update(evaluated=True, eval_seconds=time.time() - started)
    return done


def run_phase(jobs: Sequence[Job], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``run_job`` over ``jobs``, ``args.jobs`` at a time (spawned processes: OpenMP pools are not fork-safe)."""
    options = evaluation_options(args)
    if args.jobs == 1:
        return [run_job(job, args.test_samples, options, args.threads) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run_job, job, args.test_samples, options, args.threads) for job in jobs]
        return [future.result() for future in futures]


# -- estimate ---------------------------------------------------------------------------------------------------
def idle_share(fn: Any) -> tuple[Any, float]:
    """``(fn(), share)``: with one torch thread, the share of the wall time this process got the CPU (1.0 on an
    idle machine), so that wall times measured next to other work convert to idle-machine times; else 1.0."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if torch.get_num_threads() != 1:
        return result, 1.0
    return result, min(1.0, (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9))


def estimate(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds of the whole study on an otherwise idle machine: one epoch of every method timed on 2 batches
    (explanations and occlusions on) and scaled to the subset, both evaluations timed on a probe of test images and
    scaled to ``test_samples`` (their constant parts, loading and the kNN bank, kept constant); with one thread per
    run, wall times are scaled by the CPU share the process got (:func:`idle_share`). The first steps include
    warm-up, so it errs on the slow side."""
    steps = max(1, args.train_samples // args.batch_size)
    calib = min(2, steps)
    scale = steps / calib
    probe = min(args.test_samples, 2 * args.batch_size)
    per_epoch: dict[str, float] = {}
    evals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in dict.fromkeys(m for ms in FAMILIES.values() for m in ms):
            config = make_config(args, method, 0, Path(tmp) / method, exp_start_epoch=0, edda_start_epoch=0)
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": 1, "train_samples": calib * args.batch_size,
                                            "eval_samples": max(1, round(args.eval_samples / scale))})
            epoch_seconds, share = idle_share(lambda: timed_epoch(config))
            per_epoch[method] = epoch_seconds * scale * share
        for kind, metrics in (("warmup", WARMUP_METRICS), ("branch", BRANCH_METRICS)):
            result, share = idle_share(lambda: evaluate_run(
                Path(tmp) / "excon", list(metrics), samples=probe, device="cpu", progress=False, checkpoint="last",
                options=evaluation_options(args), out=Path(tmp) / f"eval-{kind}"))
            timing = result["timing"]
            grows = sum(v for k, v in timing.items() if k not in ("total_seconds", "accuracy"))
            evals[kind] = (timing["total_seconds"] + grows * (args.test_samples / probe - 1)) * share
    w, b = args.warmup_epochs, args.branch_epochs
    warm = {f: per_epoch[f] * w + evals["warmup"] for f in FAMILIES}
    branch = {m: per_epoch[m] * b + evals["branch"] for ms in FAMILIES.values() for m in ms}
    # Two phases (branches wait for their warm-up): each ends with its longest run when jobs outnumber runs.
    phase1 = max(sum(warm.values()) * args.seeds / args.jobs, max(warm.values()))
    phase2 = max(sum(branch.values()) * args.seeds / args.jobs, max(branch.values()))
    return {"seconds_per_epoch": per_epoch, "eval_seconds": evals, "warmup_seconds": warm, "branch_seconds": branch,
            "total_seconds": (sum(warm.values()) + sum(branch.values())) * args.seeds,
            "wall_seconds": phase1 + phase2, "jobs": args.jobs, "steps_per_epoch": steps,
            "threads": torch.get_num_threads()}


def print_estimate(info: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [[f"warm-up {f}", f"{info['seconds_per_epoch'][f]:.1f}", args.warmup_epochs, f"{s / 60:.1f}"]
            for f, s in info["warmup_seconds"].items()]
    rows += [[f"branch {m}", f"{info['seconds_per_epoch'][m]:.1f}", args.branch_epochs, f"{s / 60:.1f}"]
             for m, s in info["branch_seconds"].items()]
    print(f"\nEstimated cost on an idle machine ({info['threads']} torch threads, {info['steps_per_epoch']} steps of "
          f"{args.batch_size} per epoch, timed on 2 steps; evaluation included in min / run):")
    print(table(rows, ["run", "s / epoch", "epochs", "min / run"]))
    total = info["wall_seconds"] / 60
    print(f"evaluation: {info['eval_seconds']['warmup']:.0f} s per warm-up, {info['eval_seconds']['branch']:.0f} s "
          f"per branch; whole study ({args.seeds} seeds, {args.jobs} at a time): about {total:.0f} min")
    if total > args.max_minutes:
        print(f"WARNING: the estimate ({total:.0f} min) exceeds --max-minutes {args.max_minutes:g}; lower "
              "--train-samples or the epochs, or accept the longer run")


# -- results ----------------------------------------------------------------------------------------------------
def branch_values(folder: Path) -> dict[str, float | None]:
    """The table columns of one evaluated branch: :func:`grid.collect`'s values plus insertion / deletion AUC."""
    values = dict(collect(folder)["values"])
    metrics = json.loads((folder / "eval" / "eval.json").read_text())["metrics"]
    curves = metrics.get("insertion_deletion", {})
    values.update(insertion_auc=curves.get("insertion_auc"), deletion_auc=curves.get("deletion_auc"))
    return values


def branch_time(job: Job) -> dict[str, Any]:
    """The warm-up at the branch point: validation / test top-1 and how its masks are classified."""
    rows = [r for r in read_metrics(job.folder) if r.get("val_top1") is not None]
    metrics = json.loads((job.folder / "eval" / "eval.json").read_text())["metrics"]
    top1 = metrics.get("accuracy", {}).get("top1")
    return {"epoch": rows[-1]["epoch"] + 1 if rows else 0, "val_top1": rows[-1]["val_top1"] if rows else None,
            "test_top1": None if top1 is None else 100.0 * top1,
            "masked_correct": metrics.get("tsne", {}).get("masked_correct"),
            "kept_area": metrics.get("tsne", {}).get("kept_area")}


def mean_sem(values: Sequence[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n if n else None
    sem = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    return {"mean": mean, "sem": sem, "n": n}


def routing(branches: Sequence[Job]) -> dict[str, dict[int, dict[str, Any]]]:
    """``{method: {epoch: {key: mean/sem/n over seeds}}}`` of the routing statistics of the explaining branches."""
    per: dict[str, dict[int, dict[str, list[float]]]] = {}
    for job in branches:
        for row in read_metrics(job.folder):
            if "masked_correct" in row:
                cells = per.setdefault(job.method, {}).setdefault(row["epoch"], {k: [] for k in ROUTING_KEYS})
                for key in ROUTING_KEYS:
                    cells[key].append(float(row[key]))
    return {m: {e: {k: mean_sem(v) for k, v in cells.items()} for e, cells in epochs.items()}
            for m, epochs in per.items()}


def _pm(stats: dict[str, Any], digits: int = 3) -> str:
    if stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.{digits}f}" + ("" if stats["sem"] is None else f" ± {stats['sem']:.{digits}f}")


def render(args: argparse.Namespace, at_branch: dict[str, Any], tables: dict[str, Any], route: dict[str, Any]) -> str:
    w, b = args.warmup_epochs, args.branch_epochs
    lines = ["# Branch study, CIFAR-10 on CPU", "",
             f"{args.data_options['dataset']}, CIFAR ResNet-18 x{args.width}, {args.train_samples} training images, "
             f"batch {args.batch_size}, lr {args.lr:g}, t 0.1; warm-up {w} epochs of a {w + b}-epoch schedule, then "
             f"{b} branch epochs; {args.seeds} seeds; validated on {args.eval_samples} test images, evaluated (last "
             f"checkpoint) on {args.test_samples} other test images. ExCon masking: signed Grad-CAM (reference "
             "preset), threshold 0.5, mean fill, true label.", "",
             "## At branch time (the warm-up's last epoch)", ""]
    rows = [[f"warm-up {family}", *(_pm(mean_sem([s[k] for s in seeds.values() if s[k] is not None]), d)
                                    for k, d in (("val_top1", 2), ("test_top1", 2), ("masked_correct", 3),
                                                 ("kept_area", 3)))]
            for family, seeds in at_branch.items()]
    lines += [table(rows, ["warm-up", "val top-1 (%)", "test top-1 (%)", "masks classified correctly",
                           "kept area"]), "", "mean ± SEM over seeds; masks: the run's own (what the first branch "
              "epoch routes), on the evaluated test images.", ""]
    for family, methods in FAMILIES.items():
        family_tables = {key: {m: tables[key][m] for m in methods} for key, *_ in COLUMNS}
        lines += [f"## Branches from the {family} warm-up", "", summary_tables(family_tables, COLUMNS, methods[0]), ""]
    lines += ["## Routing per epoch (explaining branches)", ""]
    rows = [[m, str(e), *(_pm(stats[k]) for k in ROUTING_KEYS)] for m, epochs in route.items()
            for e, stats in sorted(epochs.items())]
    lines += [table(rows, ["method", "epoch", *ROUTING_KEYS]), "", "mean ± SEM over seeds (training images).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warmups, branches = build_jobs(args)
    timing = None
    if not args.no_estimate or args.estimate_only:
        timing = estimate(args)
        print_estimate(timing, args)
    if args.estimate_only:
        return {"estimate": timing}
    started = time.time()
    done = run_phase(warmups, args) + run_phase(branches, args)
    at_branch = {f: {job.seed: branch_time(job) for job in warmups if job.family == f} for f in FAMILIES}
    values = [(job, branch_values(job.folder)) for job in branches]
    tables = {key: {m: {j.seed: v[key] for j, v in values if j.method == m} for ms in FAMILIES.values()
                    for m in ms} for key, *_ in COLUMNS}
    # Each family against its own reference branch (the one its warm-up continues).
    paired = {key: {m: dataclasses.asdict(d) for ms in FAMILIES.values()
                    for m, d in paired_differences({m: tables[key][m] for m in ms}, ms[0]).items()}
              for key, *_ in COLUMNS}
    route = routing(branches)
    text = render(args, at_branch, tables, route)
    print("\n" + text)
    budget = {k: getattr(args, k) for k in ("seeds", "warmup_epochs", "branch_epochs", "train_samples",
                                            "eval_samples", "test_samples", "batch_size", "lr", "width",
                                            "insdel_steps", "quick", "jobs", "threads")}
    paths = write_results(args.results_dir, "branch_cifar10", {
        "budget": budget, "dataset": args.data_options["dataset"], "estimate": timing,
        "wall_seconds": time.time() - started, "done": done, "branch_time": at_branch, "values": tables,
        "paired": paired, "routing": route, "runs": [str(j.folder) for j in warmups + branches],
    }, text)
    print(f"wrote {paths[0]} and {paths[1]}")
    return {"branch_time": at_branch, "values": tables, "paired": paired, "routing": route,
            "estimate": timing, "done": done, "paths": [str(p) for p in paths]}


if __name__ == "__main__":
    main()
