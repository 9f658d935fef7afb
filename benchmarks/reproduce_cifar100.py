"""Reproduce the ExCon paper's grid: CIFAR-100 (batch 128 and 256) and Tiny ImageNet (batch 128), 5 seeds.

Methods SupConOri, SupCon, ExCon, ExConB; ResNet-50 (CIFAR stem), 200 epochs, SGD lr 0.5 with cosine decay,
temperature 0.1; explanations from epoch 0 (ExCon, batch 128), 100 (ExCon, batch 256), 50 (ExConB) on CIFAR-100 and
from epoch 0 on Tiny ImageNet (64x64). That is 4 x 2 x 5 = 40 CIFAR-100 runs and 4 x 5 = 20 Tiny ImageNet runs.
Each run is trained, then evaluated on the test set (top-1, drop / increase, infidelity, ECE clean and FGSM).

    python benchmarks/reproduce_cifar100.py --list                         # every run as an `exaug train` command
    python benchmarks/reproduce_cifar100.py --dry-run                      # every run, 2 CPU steps, tiny model
    python benchmarks/reproduce_cifar100.py --device cuda:0 --cifar100-root ~/data --tinyimagenet-root ~/data
    python benchmarks/reproduce_cifar100.py --gpus 0,1,2,3 ...             # one run per GPU, in parallel
    python benchmarks/reproduce_cifar100.py --gpus 0,1,2,3 --torchrun 4 ...  # each run on 4 GPUs (torchrun)
    python benchmarks/reproduce_cifar100.py --submit slurm --slurm-partition gpu ...  # a Slurm job array (submitit)
    python benchmarks/reproduce_cifar100.py --aggregate                    # the paper's Tables 1-4, ours vs paper

``--tuning`` trains on 80% of the training set and validates on the other 20% (the paper's tuning protocol), in a
separate folder; without it runs train on the full training set and validate on the test set. Every command is
resumable: finished runs (``summary.json`` status ``finished``) are skipped, interrupted ones resume from ``last.pt``,
unevaluated ones are evaluated. ``--submit`` keeps these rules on a cluster: one job-array task per unfinished
run (``--torchrun N``: N GPUs per task), see ``benchmarks/cluster.py`` and docs/integrations.md.
See docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import json
import queue
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import add_submit_arguments, submit_grid  # noqa: E402
from common import RESULTS, table  # noqa: E402
from grid import (  # noqa: E402
    REPO, TABLE_LEGEND, GridRun, collect, evaluate_command, is_evaluated, metric_tables, pm, prepare_config,
    run_commands, run_in_process, run_status, summarise, train_command, write_config, write_results,
)

from exaug.training import TrainConfig  # noqa: E402
from exaug.training.logger import read_metrics  # noqa: E402

METHODS: tuple[str, ...] = ("supcon_ori", "supcon", "excon", "exconb")
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
#: ``setting -> (dataset, batch size, image size, {method: explanation start epoch})`` (NOTES §2).
SETTINGS: dict[str, tuple[str, int, int, dict[str, int]]] = {
    "cifar100-bs128": ("cifar100", 128, 32, {"excon": 0, "exconb": 50}),
    "cifar100-bs256": ("cifar100", 256, 32, {"excon": 100, "exconb": 50}),
    "tinyimagenet-bs128": ("tinyimagenet", 128, 64, {"excon": 0, "exconb": 0}),
}
#: The paper's recipe, shared by every run (the rest are TrainConfig defaults: MLP head 2048-2048-128, SGD momentum
#: 0.9, weight decay 1e-4, cosine to lr * 1e-3, base temperature 0.07).
RECIPE: dict[str, Any] = {"model": "resnet50", "epochs": 200, "lr": 0.5, "temperature": 0.1, "quiet": True}
#: ``--dry-run``: every run for 2 steps of 8 images on the CPU, tiny ResNet-18, synthetic data, 1 epoch.
DRY_RUN: dict[str, Any] = {"dataset": "synthetic", "data_root": None, "download": False, "model": "resnet18",
                           "width": 0.0625, "epochs": 1, "batch_size": 8, "train_samples": 16, "eval_samples": 16,
                           "device": "cpu", "workers": 0}
DRY_RUN_EVAL_SAMPLES = 16
DRY_RUN_EVAL_OPTIONS = {"accuracy": {"knn_train_samples": 16}, "calibration": {"corruptions": ()}}

#: The paper's numbers (NOTES §2): ``metric -> setting -> method -> (mean, std or None)``. Accuracies in percent,
#: drop / increase as fractions of images, stability in percentage points.
PAPER: dict[str, dict[str, dict[str, tuple[float, float | None]]]] = {
    "top1": {
        "cifar100-bs128": {"excon": (76.90, 0.66), "exconb": (76.84, 0.68), "supcon_ori": (75.78, 0.77),
                           "supcon": (76.18, 0.63)},
        "cifar100-bs256": {"excon": (77.56, 0.54), "exconb": (77.27, 0.55), "supcon_ori": (76.86, 0.15),
                           "supcon": (76.99, 0.35)},
        "tinyimagenet-bs128": {"excon": (57.84, 0.29), "exconb": (58.73, 0.26), "supcon_ori": (53.51, 0.66),
                               "supcon": (55.62, 0.31)},
    },
    "infidelity": {"cifar100-bs128": {"excon": (0.00147, None), "exconb": (0.00176, None),
                                      "supcon_ori": (0.00311, None), "supcon": (0.00203, None)}},
    "drop_percent@0.45": {"cifar100-bs128": {"excon": (0.726, None), "exconb": (0.799, None),
                                             "supcon": (0.993, None)}},
    "increase_percent@0.45": {"cifar100-bs128": {"excon": (0.273, None), "supcon": (0.007, None)}},
    "stability": {"tinyimagenet-bs128": {"excon": (0.63, None), "exconb": (0.69, None), "supcon": (0.92, None)}},
}

#: Cost model of the GPU-hour estimate (relative to ``--epoch-seconds``, one Algorithm-1 epoch of SupCon on
#: CIFAR-100 at batch 256): explanation epochs cost 1.3x (a batched ExCon step measured 1.28x a SupCon step,
#: NOTES §8), batch 128 1.1x (smaller kernels, twice the steps), an epoch scales with images x pixels.
EXPLANATION_FACTOR = 1.3
BATCH128_FACTOR = 1.1
DATA_FACTOR = {"cifar100": 1.0, "tinyimagenet": 2.0 * (64 / 32) ** 2}  # 100k images of 64x64 vs 50k of 32x32


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print every run (as an `exaug train` command) and stop")
    mode.add_argument("--aggregate", action="store_true", help="tables from finished run folders (no training)")
    parser.add_argument("--dry-run", action="store_true",
                        help="execute every run for 2 steps on the CPU with a tiny model and synthetic data "
                             "(with --aggregate: aggregate the dry-run folders)")
    parser.add_argument("--tuning", action="store_true",
                        help="the paper's tuning protocol: train on 80%% of the training set, validate on 20%%")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs" / "reproduce",
                        help="root of the run folders (<out>/<final|tuning|dry-run>/<setting>/<method>/seed<k>)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the tables go")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="use the first N of the seeds 0-4")
    parser.add_argument("--cifar100-root", default="data", help="folder holding cifar-100-python/")
    parser.add_argument("--tinyimagenet-root", default="data", help="folder holding tiny-imagenet-200/")
    parser.add_argument("--download", action="store_true", help="let torchvision download CIFAR-100")
    parser.add_argument("--device", default="auto", help="device of sequential runs: cuda:0, cpu, auto")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU ids: runs in parallel subprocesses, one "
                                                     "per GPU (per --torchrun N GPUs)")
    parser.add_argument("--torchrun", type=int, default=None, metavar="N",
                        help="train each run with torchrun --nproc_per_node=N (batch split over the N processes)")
    parser.add_argument("--subprocess", action="store_true",
                        help="run sequential runs through `python -m exaug train/evaluate` subprocesses too")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers per process")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast precision")
    parser.add_argument("--eval-samples", type=int, default=None, help="evaluate on N test images (default: all)")
    parser.add_argument("--epoch-seconds", type=float, default=None,
                        help="seconds of one SupCon Algorithm-1 epoch (encoder + classifier epoch + validation) of "
                             "ResNet-50 on CIFAR-100 at batch 256 on one GPU (default: the epoch_seconds measured "
                             "by benchmarks/gpu_check.py in --gpu-check when present, else an ASSUMED 75 s)")
    parser.add_argument("--gpu-check", default=str(RESULTS / "gpu_check.json"),
                        help="gpu_check.py's JSON, read for the measured epoch time (default: %(default)s)")
    parser.add_argument("--eval-minutes", type=float, default=5.0, help="assumed GPU minutes per evaluation")
    add_submit_arguments(parser)
    args = parser.parse_args(argv)
    args.epoch_seconds, args.epoch_seconds_source = resolve_epoch_seconds(args.epoch_seconds, Path(args.gpu_check))
    if args.submit and args.gpus:
        parser.error("--submit and --gpus exclude each other (--gpus schedules runs on this machine)")
    if args.seeds < 1 or args.seeds > len(SEEDS):
        parser.error(f"--seeds must be between 1 and {len(SEEDS)}")
    if args.torchrun is not None and args.torchrun < 1:
        parser.error("--torchrun must be >= 1")
    return args


def phase(args: argparse.Namespace) -> str:
    return "dry-run" if args.dry_run else "tuning" if args.tuning else "final"


def make_config(args: argparse.Namespace, setting: str, method: str, seed: int) -> TrainConfig:
    """The paper's run ``setting`` x ``method`` x ``seed`` (shrunk to a CPU smoke run with ``--dry-run``)."""
    dataset, batch, size, starts = SETTINGS[setting]
    root = args.cifar100_root if dataset == "cifar100" else args.tinyimagenet_root
    values: dict[str, Any] = {
        **RECIPE, "method": method, "dataset": dataset, "data_root": root, "download": args.download,
        "image_size": size, "batch_size": batch, "exp_start_epoch": starts.get(method, 0), "seed": seed,
        "val_fraction": 0.2 if args.tuning else 0.0, "workers": args.workers, "amp": args.amp,
        # Under --gpus each subprocess sees its own GPUs; under torchrun each rank takes cuda:<LOCAL_RANK>.
        "device": "cuda" if args.gpus or args.torchrun else args.device,
        "out": str(args.out / phase(args) / setting / method / f"seed{seed}"),
    }
    if args.torchrun:
        if batch % args.torchrun:
            raise SystemExit(f"reproduce: error: batch {batch} of {setting} is not divisible by --torchrun "
                             f"{args.torchrun}")
        values["batch_size"] = batch // args.torchrun  # per process: the global batch stays the paper's
    if args.dry_run:
        values.update(DRY_RUN)
        # One epoch: start explanations at once so that every run exercises its own code path.
        values["exp_start_epoch"] = 0
    return TrainConfig.from_dict(values)


def build_grid(args: argparse.Namespace) -> list[GridRun]:
    return [GridRun(setting, method, seed, make_config(args, setting, method, seed))
            for setting in args.settings for method in args.methods for seed in SEEDS[: args.seeds]]


#: Flags ``--list`` always shows, default or not, so that every command reads as the paper's recipe.
SHOWN_FLAGS = ("method", "dataset", "model", "epochs", "batch_size", "lr", "temperature", "exp_start_epoch", "seed")


def train_flags(config: TrainConfig) -> str:
    """``config`` as ``exaug train`` flags: the recipe's, then every other option that differs from the default."""
    defaults = TrainConfig().to_dict()
    flags = []
    values = config.to_dict()
    for key in (*SHOWN_FLAGS, *(k for k in values if k not in SHOWN_FLAGS)):
        value = values[key]
        if key == "explainer_options" or (key not in SHOWN_FLAGS and value == defaults[key]):
            continue
        if key == "exp_start_epoch" and not config.uses_explanations:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


# -- estimate -------------------------------------------------------------------------------------------------------
#: The SupCon Algorithm-1 epoch assumed when neither --epoch-seconds nor a gpu_check.py measurement is given.
ASSUMED_EPOCH_SECONDS = 75.0


def resolve_epoch_seconds(given: float | None, gpu_check: Path) -> tuple[float, str]:
    """``(seconds, source)``: ``--epoch-seconds``, else gpu_check.py's measured ``epoch_seconds``, else 75 s."""
    if given is not None:
        if not given > 0:
            raise SystemExit(f"reproduce: --epoch-seconds must be positive, got {given}")
        return given, "--epoch-seconds"
    if gpu_check.is_file():
        measured = json.loads(gpu_check.read_text())
        seconds = measured.get("epoch_seconds")
        if isinstance(seconds, (int, float)) and seconds > 0:
            settings = measured.get("settings", {})
            how = ", ".join(f"{k}={settings[k]}" for k in ("device", "amp", "channels_last", "compile")
                            if k in settings)
            gpu = (measured.get("machine") or {}).get("cuda") or "no GPU"
            return float(seconds), f"measured by gpu_check.py on {gpu} ({how}; {gpu_check})"
    return ASSUMED_EPOCH_SECONDS, f"ASSUMED (no measurement in {gpu_check}: run benchmarks/gpu_check.py on the GPU)"


def run_seconds(run: GridRun, epoch_seconds: float, done_epochs: int = 0) -> float:
    """Estimated single-GPU seconds of the epochs of ``run`` still to train (see the cost-model constants)."""
    c = run.config
    global_batch = SETTINGS[run.setting][1]
    base = epoch_seconds * DATA_FACTOR.get(c.dataset, 1.0) * (BATCH128_FACTOR if global_batch <= 128 else 1.0)
    explained = max(0, c.epochs - max(c.exp_start_epoch, done_epochs)) if c.uses_explanations else 0
    plain = max(0, c.epochs - done_epochs) - explained
    return base * (plain + EXPLANATION_FACTOR * explained)


def estimate(args: argparse.Namespace, runs: Sequence[GridRun]) -> dict[str, Any]:
    """GPU-hours of what is left to do (training + evaluation), and the wall-clock time on the chosen GPUs."""
    gpu_seconds = 0.0
    per_setting: dict[str, float] = {}
    for run in runs:
        status = run_status(run.folder)
        done_epochs = len({r.get("epoch") for r in read_metrics(run.folder)}) if status == "partial" else 0
        seconds = 0.0 if status == "finished" else run_seconds(run, args.epoch_seconds, done_epochs)
        seconds += 0.0 if is_evaluated(run.folder) else 60.0 * args.eval_minutes
        gpu_seconds += seconds
        per_setting[run.setting] = per_setting.get(run.setting, 0.0) + seconds / 3600
    gpus = len(args.gpus.split(",")) if args.gpus else 1
    return {"gpu_hours": gpu_seconds / 3600, "per_setting_gpu_hours": per_setting, "gpus": gpus,
            "wall_hours": gpu_seconds / 3600 / gpus, "epoch_seconds_assumed": args.epoch_seconds,
            "epoch_seconds_source": getattr(args, "epoch_seconds_source", "--epoch-seconds"),
            "explanation_factor": EXPLANATION_FACTOR, "batch128_factor": BATCH128_FACTOR}


def print_estimate(info: dict[str, Any]) -> None:
    parts = ", ".join(f"{s} {h:.0f}" for s, h in info["per_setting_gpu_hours"].items())
    print(f"Estimated remaining work: {info['gpu_hours']:.0f} GPU-hours ({parts}); about {info['wall_hours']:.0f} h "
          f"on {info['gpus']} GPU(s). Uses {info['epoch_seconds_assumed']:g} s per SupCon epoch of ResNet-50 "
          f"on CIFAR-100 at batch 256 ({info['epoch_seconds_source']}), x{info['explanation_factor']} for explanation "
          f"epochs, x{info['batch128_factor']} at batch 128, x8 for Tiny ImageNet.", flush=True)


# -- execution ------------------------------------------------------------------------------------------------------
def run_sequential(args: argparse.Namespace, runs: Sequence[GridRun]) -> list[dict[str, Any]]:
    """One run after the other in this process (``--subprocess``: through the CLI, like the parallel mode)."""
    eval_samples = DRY_RUN_EVAL_SAMPLES if args.dry_run else args.eval_samples
    options = DRY_RUN_EVAL_OPTIONS if args.dry_run else None
    eval_device = "cpu" if args.dry_run else args.device
    done = []
    for number, run in enumerate(runs, 1):
        print(f"[{number}/{len(runs)}] {run.name}", flush=True)
        if args.subprocess or args.torchrun:
            code = run_commands(run_plan(args, run, eval_device, eval_samples, options), log_file(args, run))
            if code:
                raise SystemExit(f"reproduce: {run.name} failed (exit {code}); see {log_file(args, run)}")
            done.append({"run": run.name, "exit": code})
        else:
            done.append(run_in_process(run, eval_samples, eval_device, options))
    return done


def log_file(args: argparse.Namespace, run: GridRun) -> Path:
    return args.out / phase(args) / "logs" / f"{run.name.replace('/', '_')}.log"


def run_plan(args: argparse.Namespace, run: GridRun, eval_device: str, eval_samples: int | None,
             eval_options: dict[str, Any] | None = None) -> list[list[str]]:
    """The commands that bring ``run`` up to date: train (or resume) unless finished, evaluate unless evaluated."""
    commands = []
    config = prepare_config(run.config)
    if config is not None:
        path = write_config(config, args.out / phase(args) / "configs" / f"{run.name.replace('/', '_')}.json")
        commands.append(train_command(path, args.torchrun))
    if not is_evaluated(run.folder) or config is not None:
        commands.append(evaluate_command(run.folder, eval_samples, eval_device, eval_options))
    return commands


def run_parallel(args: argparse.Namespace, runs: Sequence[GridRun]) -> list[dict[str, Any]]:
    """``--gpus``: one worker thread per slot of GPUs (``--torchrun N`` GPUs each), each running subprocesses with
    ``CUDA_VISIBLE_DEVICES`` set to its slot, taking the next run when the previous one is done."""
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    per_run = args.torchrun or 1
    if len(gpus) < per_run:
        raise SystemExit(f"reproduce: error: --torchrun {per_run} needs at least {per_run} GPUs, "
                         f"--gpus has {len(gpus)}")
    slots = [gpus[i : i + per_run] for i in range(0, len(gpus) - per_run + 1, per_run)]
    todo: queue.Queue[GridRun] = queue.Queue()
    for run in runs:
        todo.put(run)
    done: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(slot: list[str]) -> None:
        while True:
            try:
                run = todo.get_nowait()
            except queue.Empty:
                return
            started = time.time()
            print(f"[GPU {','.join(slot)}] {run.name}", flush=True)
            code = run_commands(run_plan(args, run, "cuda", args.eval_samples), log_file(args, run),
                                env={"CUDA_VISIBLE_DEVICES": ",".join(slot)})
            with lock:
                done.append({"run": run.name, "gpus": slot, "exit": code, "seconds": time.time() - started})
            if code:
                print(f"[GPU {','.join(slot)}] {run.name} FAILED (exit {code}); see {log_file(args, run)}", flush=True)

    threads = [threading.Thread(target=worker, args=(slot,), daemon=True) for slot in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [d["run"] for d in done if d["exit"]]
    if failed:
        raise SystemExit(f"reproduce: {len(failed)} run(s) failed: {', '.join(failed)}; rerun to retry them")
    return done


# -- aggregation ----------------------------------------------------------------------------------------------------
def _paper_cell(metric: str, setting: str, method: str, digits: int, scientific: bool) -> tuple[str, float | None]:
    value = PAPER.get(metric, {}).get(setting, {}).get(method)
    if value is None:
        return "n/a", None
    return pm({"mean": value[0], "std": value[1]}, digits, scientific), value[0]


def _compare_rows(summaries: dict[str, dict[str, Any]], metric: str, settings: Sequence[str], methods: Sequence[str],
                  digits: int, scientific: bool = False) -> list[list[str]]:
    """One row per method: for each setting, ours (mean ± std), the paper's and ours minus the paper's."""
    rows = []
    for method in methods:
        row = [method]
        for setting in settings:
            ours = summaries.get(setting, {}).get(method, {}).get(metric, {"mean": None})
            paper_text, paper_mean = _paper_cell(metric, setting, method, digits, scientific)
            diff = "n/a" if ours["mean"] is None or paper_mean is None else \
                f"{ours['mean'] - paper_mean:+.{digits}{'e' if scientific else 'f'}}"
            row += [pm(ours, digits, scientific), paper_text, diff]
        rows.append(row)
    return rows


def _header(settings: Sequence[str]) -> list[str]:
    return ["method", *(h for s in settings for h in (f"{s} ours", f"{s} paper", f"{s} diff"))]


def paper_tables(summaries: dict[str, dict[str, Any]], methods: Sequence[str]) -> str:
    """The paper's Tables 1-4 with our numbers, the paper's and the differences (ours - paper)."""
    keep = "0.45"
    sections = [
        ("Table 1: top-1 accuracy (%), test set", "top1", list(SETTINGS), 2, False),
        ("Table 2: infidelity (lower is better), CIFAR-100, batch 128", "infidelity", ["cifar100-bs128"], 2, True),
        (f"Table 3a: drop % at keep {keep} (fraction of images, lower is better), CIFAR-100, batch 128",
         f"drop_percent@{keep}", ["cifar100-bs128"], 3, False),
        (f"Table 3b: increase % at keep {keep} (fraction of images, higher is better), CIFAR-100, batch 128",
         f"increase_percent@{keep}", ["cifar100-bs128"], 3, False),
        ("Table 4: training stability, mean over epochs of the across-seed std of validation top-1 (lower is "
         "better), Tiny ImageNet", "stability", ["tinyimagenet-bs128"], 2, False),
    ]
    lines = []
    for title, metric, settings, digits, scientific in sections:
        lines += [f"## {title}", "", table(_compare_rows(summaries, metric, settings, methods, digits, scientific),
                                             _header(settings)), ""]
    return "\n".join(lines)


def aggregate(args: argparse.Namespace, runs: Sequence[GridRun]) -> dict[str, Any]:
    """Summaries per setting and method from the finished, evaluated folders; tables written to --results-dir."""
    summaries: dict[str, dict[str, Any]] = {}
    missing = []
    for setting in args.settings:
        for method in args.methods:
            cell = [r for r in runs if r.setting == setting and r.method == method]
            ready = [r for r in cell if run_status(r.folder) == "finished" and is_evaluated(r.folder)]
            missing += [r.name for r in cell if r not in ready]
            if ready:
                summaries.setdefault(setting, {})[method] = summarise([collect(r.folder) for r in ready])
    name = "reproduce_cifar100" + {"final": "", "tuning": "_tuning", "dry-run": "_dry_run"}[phase(args)]
    head = [f"# ExCon paper reproduction ({phase(args)} runs)", "",
            f"Run folders: `{args.out / phase(args)}`. ResNet-50, 200 epochs, lr 0.5, t 0.1, 5 seeds"
            + (" (DRY RUN: tiny ResNet-18 on synthetic data for 2 steps; the numbers only prove the wiring)"
               if args.dry_run else "") + ". mean ± std over seeds (population std); diff = ours - paper (means).", ""]
    if missing:
        head += [f"{len(missing)} run(s) not finished or not evaluated yet (left out): {', '.join(missing)}", ""]
    details = []
    for setting, summary in summaries.items():
        details += [f"## All metrics: {setting}", "", metric_tables(summary, level="###"), ""]
    text = "\n".join([*head, paper_tables(summaries, args.methods), *details, TABLE_LEGEND, ""])
    paths = write_results(args.results_dir, name, {
        "phase": phase(args), "summaries": summaries, "paper": PAPER, "missing": missing,
        "runs": [{"name": r.name, "folder": str(r.folder), "status": run_status(r.folder)} for r in runs],
    }, text)
    print(text)
    print(f"wrote {paths[0]} and {paths[1]}")
    return {"summaries": summaries, "missing": missing, "paths": [str(p) for p in paths], "text": text}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runs = build_grid(args)
    if args.list:
        for run in runs:
            print(f"{run.name:34s} {run_status(run.folder):8s} exaug train {train_flags(run.config)}")
        print(f"{len(runs)} runs")
        return {"runs": runs}
    if args.aggregate:
        return aggregate(args, runs)
    if args.dry_run and (args.gpus or args.torchrun):
        raise SystemExit("reproduce: error: --dry-run runs on the CPU; drop --gpus / --torchrun")
    if not args.dry_run:
        print_estimate(estimate(args, runs))
    if args.submit:
        return {"runs": runs, "jobs": submit_grid(
            runs, args, folder=args.submit_folder or args.out / phase(args) / "submitit",
            gpus_per_task=0 if args.dry_run else args.torchrun or 1, torchrun=args.torchrun,
            eval_samples=DRY_RUN_EVAL_SAMPLES if args.dry_run else args.eval_samples,
            eval_device="cpu" if args.dry_run else "cuda", eval_options=DRY_RUN_EVAL_OPTIONS if args.dry_run else None)}
    started = time.time()
    done = run_parallel(args, runs) if args.gpus else run_sequential(args, runs)
    print(f"{len(done)} runs up to date in {time.time() - started:.0f} s; tables: "
          f"python benchmarks/reproduce_cifar100.py --aggregate{' --dry-run' if args.dry_run else ''}"
          f"{' --tuning' if args.tuning else ''}")
    return {"runs": runs, "done": done}


if __name__ == "__main__":
    main()
