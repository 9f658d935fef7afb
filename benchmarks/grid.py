"""Grid machinery shared by the reproduction benchmarks (``cifar10_cpu.py``, ``reproduce_cifar100.py``).

A grid is a list of :class:`GridRun` (a setting, a method, a seed and the :class:`~exaug.training.TrainConfig` of
the run, whose ``out`` is the run folder). This module decides what each folder still needs (:func:`run_status`),
trains and evaluates runs in this process or as ``python -m exaug ...`` subprocesses, and turns finished folders
into mean ± std over seeds (:func:`collect`, :func:`summarise`) and result files (:func:`write_results`).

Resumability rests on the trainer's own files: ``summary.json`` with ``status == "finished"`` means done,
``last.pt`` without it means interrupted (continued with ``resume=True``), ``eval/eval.json`` means evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table  # noqa: E402

from exaug.evaluation import evaluate_run  # noqa: E402
from exaug.evaluation.compare import read_run_record  # noqa: E402
from exaug.metrics import training_stability  # noqa: E402
from exaug.training import TrainConfig, Trainer  # noqa: E402

__all__ = [
    "COLUMNS_EXPLAIN", "COLUMNS_MAIN", "EVAL_METRICS", "KEEP_FRACTIONS", "REPO", "GridRun", "check_same_run",
    "collect", "evaluate_command", "evaluate_folder", "is_evaluated", "mean_std", "metric_tables", "pm",
    "prepare_config",
    "run_commands", "run_in_process", "run_status", "summarise", "train_command", "write_config", "write_results",
]

REPO = Path(__file__).resolve().parent.parent
#: What every grid run is evaluated with (``exaug evaluate --metrics``): the paper's tables need nothing else.
EVAL_METRICS: tuple[str, ...] = ("accuracy", "drop_increase", "infidelity", "calibration")
#: Keep fractions of drop / increase (the paper's table uses 0.45; all three are evaluated by default).
KEEP_FRACTIONS: tuple[float, ...] = (0.15, 0.30, 0.45)


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One cell of a grid: ``setting`` (e.g. ``cifar100-bs128``) x ``method`` x ``seed``."""

    setting: str
    method: str
    seed: int
    config: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.method}/seed{self.seed}"


def add_study_arguments(parser: Any, *, name: str, seeds: int, train_samples: int, test_samples: int, width: float,
                        max_minutes: float, quick_help: str) -> None:
    """The flags every CPU study shares, with the study's defaults: folders, seeds, data and network size, batch
    and lr, process layout, the estimate and ``--quick``."""
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs" / name, help="run folders")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help=f"where {name}.json/.md go")
    parser.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0 .. N-1); at least 2 for a SEM")
    parser.add_argument("--train-samples", type=int, default=train_samples,
                        help="training images (of a real dataset: a seeded, class-balanced subset)")
    parser.add_argument("--test-samples", type=int, default=test_samples, help="held-out test images evaluated")
    parser.add_argument("--width", type=float, default=width, help="channel width multiplier of the ResNet-18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="encoder lr (default 0.5 * batch / 256)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads per run (default: torch's; 1 when --jobs > 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained side by side in separate processes; on a small CPU, --jobs 2 --threads 1 "
                             "keeps both cores busy without the OpenMP oversubscription of two 2-thread runs")
    parser.add_argument("--max-minutes", type=float, default=max_minutes, help="warn when the estimate exceeds this")
    parser.add_argument("--estimate-only", action="store_true", help="print the time estimate and stop")
    parser.add_argument("--no-estimate", action="store_true", help="skip the timing before the study")
    parser.add_argument("--quick", action="store_true", help=quick_help)


def finish_study_arguments(parser: Any, args: Any, positive: Sequence[str] = ("jobs",)) -> Any:
    """Check ``positive`` options are >= 1, fill the lr (SupContrast's 0.5 x batch / 256) and the threads (1 per
    run with ``--jobs`` > 1), and set this process's torch threads to them."""
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr is None:
        args.lr = 0.5 * args.batch_size / 256
    if args.threads is None and args.jobs > 1:
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def run_status(folder: str | Path) -> str:
    """``"finished"`` (training done), ``"partial"`` (a ``last.pt`` to resume from) or ``"new"``."""
    folder = Path(folder)
    summary = folder / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return "finished"
    return "partial" if (folder / "last.pt").is_file() else "new"


def is_evaluated(folder: str | Path) -> bool:
    return (Path(folder) / "eval" / "eval.json").is_file()


#: Options that may differ between a run folder and the grid asking for it (they do not change the numbers).
_FREE_OPTIONS = ("resume", "quiet", "device", "workers", "tensorboard", "logger", "out")


def check_same_run(config: TrainConfig) -> None:
    """Raise if ``config.out`` holds a run trained with other options (e.g. after changing the budget), so that
    results of different settings are never skipped over or averaged together silently."""
    path = Path(config.out) / "config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    wanted = config.to_dict()
    differs = [k for k in wanted if k not in _FREE_OPTIONS and k in saved and saved[k] != wanted[k]]
    if differs:
        details = ", ".join(f"{k}: folder {saved[k]!r} vs asked {wanted[k]!r}" for k in differs)
        raise ValueError(f"{str(config.out)!r} holds a run with other options ({details}); use another --out "
                         "or delete that folder")


def prepare_config(config: TrainConfig) -> TrainConfig | None:
    """The config to train with (``resume=True`` when interrupted), or ``None`` when the run is finished.

    A folder holding only ``config.json`` (a run killed before its first epoch ended) starts again from scratch.

    Raises:
        ValueError: the folder holds a run with other options (:func:`check_same_run`).
    """
    check_same_run(config)
    status = run_status(config.out)
    if status == "finished":
        return None
    # resume=True also for a folder holding only config.json: the trainer never trains into a folder with run
    # files without it, and with it starts such a run (no last.pt) from scratch.
    return dataclasses.replace(config, resume=status == "partial" or (Path(config.out) / "config.json").is_file())


def _evaluate_kwargs(samples: int | None, device: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"metrics": list(EVAL_METRICS), "samples": samples, "device": device, "progress": False,
            "options": options}


def fit_config(name: str, folder: Path, config: TrainConfig, *, log: Callable[[str], None] = print,
               torchrun: int | None = None, complete: Sequence[str] = ("finished",)) -> dict[str, Any]:
    """Train (or resume) ``config`` here, or as a torchrun group; its summary (``seconds``, ``status``).

    Raises:
        KeyboardInterrupt: the run ended with a status outside ``complete`` (interrupted: the same command resumes it).
    """
    log(f"[{name}] {'resuming' if config.resume else 'training'} -> {folder}")
    if torchrun:
        started = time.time()
        # Next to the run (not in it: a folder holding files but no last.pt is still a new run).
        path = write_config(config, folder.parent / f".{folder.name}.train.json")
        code = subprocess.call(train_command(path, torchrun), cwd=REPO)
        if code != 0:
            raise RuntimeError(f"{name}: torchrun training failed (exit {code})")
        summary = {"seconds": time.time() - started, "status": run_status(folder)}
    else:
        trainer = Trainer(config)
        try:
            summary = trainer.fit()
        finally:
            trainer.close()
    if summary["status"] not in complete:
        raise KeyboardInterrupt(f"{name} was interrupted; run the same command again to resume it")
    return summary


def timed_epoch(config: TrainConfig) -> float:
    """Seconds of the first epoch of ``config``, trained here (the caller's folder is a throw-away one)."""
    trainer = Trainer(config)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer.history[0]["epoch_time"]


def run_in_process(run: GridRun, eval_samples: int | None, eval_device: str = "cpu",
                   eval_options: Mapping[str, Any] | None = None, log: Callable[[str], None] = print,
                   torchrun: int | None = None) -> dict[str, Any]:
    """Train (or resume) and evaluate ``run`` here unless already done; returns what was done and the timings.

    With ``torchrun=N`` the training runs as ``torchrun --nproc_per_node=N -m exaug train`` (a subprocess) and
    the evaluation here: what one cluster task does with a torchrun group.
    """
    done: dict[str, Any] = {"run": run.name, "trained": False, "evaluated": False}
    config = prepare_config(run.config)
    if config is not None:
        summary = fit_config(run.name, run.folder, config, log=log, torchrun=torchrun)
        done.update(trained=True, train_seconds=summary["seconds"])
    if not is_evaluated(run.folder):
        started = time.time()
        evaluate_folder(run.folder, eval_samples, eval_device, eval_options)
        done.update(evaluated=True, eval_seconds=time.time() - started)
    return done


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as JSON for ``exaug train --config`` (every field, so defaults cannot drift)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def train_command(config_file: str | Path, torchrun: int | None = None) -> list[str]:
    """``python -m exaug train --config FILE``, or under ``torchrun --nproc_per_node=N``."""
    if torchrun:
        return ["torchrun", "--standalone", f"--nproc_per_node={torchrun}", "-m", "exaug", "train",
                "--config", str(config_file)]
    return [sys.executable, "-m", "exaug", "train", "--config", str(config_file)]


def evaluate_command(folder: str | Path, samples: int | None, device: str,
                     options: Mapping[str, Any] | None = None) -> list[str]:
    """``python benchmarks/grid.py evaluate ...``: :func:`evaluate_folder` in a subprocess, so that runs evaluated
    by subprocesses get exactly the settings of :func:`run_in_process`."""
    command = [sys.executable, str(Path(__file__).resolve()), "evaluate", str(folder), "--device", device]
    if samples is not None:
        command += ["--samples", str(samples)]
    return command + (["--options", json.dumps(options)] if options else [])


def evaluate_folder(folder: str | Path, samples: int | None, device: str = "cpu",
                    options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate one run folder with the grid's metrics (writes ``<folder>/eval/eval.json``)."""
    return evaluate_run(folder, **_evaluate_kwargs(samples, device, options))


def run_commands(commands: Sequence[Sequence[str]], log_file: Path, env: Mapping[str, str] | None = None) -> int:
    """Run ``commands`` one after the other (stop at the first failure), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as handle:
        for command in commands:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            code = subprocess.call(list(command), stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                   env={**os.environ, **(env or {})})
            if code != 0:
                return code
    return 0


# -- aggregation ----------------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` of the present values; population std (``ddof=0``) like ``exaug compare``;
    ``std`` is ``None`` for fewer than two values."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0, "values": []}
    array = np.asarray(present)
    return {"mean": float(array.mean()), "std": float(array.std()) if len(present) > 1 else None,
            "n": len(present), "values": present}


def pm(stats: Mapping[str, Any], digits: int = 2, scientific: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals (significant digits in scientific notation); ``n/a`` when missing."""
    if stats.get("mean") is None:
        return "n/a"
    kind = "e" if scientific else "f"
    text = f"{stats['mean']:.{digits}{kind}}"
    return text if stats.get("std") is None else f"{text} ± {stats['std']:.{digits}{kind}}"


def collect(folder: str | Path) -> dict[str, Any]:
    """One run folder as flat values: :func:`~exaug.evaluation.compare.read_run_record`'s columns plus drop /
    increase at every keep fraction and the std of validation top-1 across epochs (percentage points)."""
    record = read_run_record(folder)
    values = dict(record["values"])
    eval_file = Path(folder) / "eval" / "eval.json"
    evaluation = json.loads(eval_file.read_text()) if eval_file.is_file() else {}
    keeps = evaluation.get("metrics", {}).get("drop_increase", {}).get("keep", {})
    for q in KEEP_FRACTIONS:
        scores = keeps.get(repr(q), {})
        values[f"drop_percent@{q}"] = scores.get("drop_percent")
        values[f"increase_percent@{q}"] = scores.get("increase_percent")
    series = record["val_top1"]
    values["val_std_epochs"] = float(np.std(series)) if len(series) > 1 else None
    summary_file = Path(folder) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    # Compute spent on the run, whatever invocation of the grid did the work (a resumed grid only evaluates).
    return {**record, "values": values, "train_seconds": summary.get("seconds"),
            "eval_seconds": evaluation.get("timing", {}).get("total_seconds")}


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the records (one method, one setting) of every value, plus the paper's training stability
    (mean over epochs of the across-seed std of validation top-1, :func:`exaug.metrics.training_stability`)."""
    keys = list(records[0]["values"]) if records else []
    out: dict[str, Any] = {key: mean_std([r["values"].get(key) for r in records]) for key in keys}
    series = [r["val_top1"] for r in records if r["val_top1"]]
    stability = None
    if len(series) >= 2:
        epochs = min(len(s) for s in series)
        stability = training_stability([s[:epochs] for s in series])
    out["stability"] = {"mean": stability, "std": None, "n": len(series), "values": []}
    out["seeds"] = sorted(r["seed"] for r in records)
    return out


#: ``(key, header, decimals, scientific)`` of the per-method tables (keys of :func:`summarise`).
COLUMNS_MAIN: tuple[tuple[str, str, int, bool], ...] = (
    ("top1", "top-1 (%)", 2, False), ("best_val_top1", "best val top-1 (%)", 2, False),
    ("ece_clean", "ECE clean", 4, False), ("ece_fgsm", "ECE FGSM", 4, False),
    ("val_std_epochs", "val top-1 std over epochs", 2, False), ("stability", "stability (across-seed std)", 2, False),
)
COLUMNS_EXPLAIN: tuple[tuple[str, str, int, bool], ...] = (
    *((f"drop_percent@{q}", f"drop % @{q}", 3, False) for q in KEEP_FRACTIONS),
    *((f"increase_percent@{q}", f"increase % @{q}", 3, False) for q in KEEP_FRACTIONS),
    ("infidelity", "infidelity", 2, True),
)
TABLE_LEGEND = ("top-1: evaluated test images, best checkpoint; ECE: 10 bins, FGSM eps 4/255; drop / increase: "
                "fractions of images whose confidence drops / rises when only the top-q salient pixels are kept; "
                "val top-1 std over epochs: per run, then mean ± std over seeds; stability: the paper's definition, "
                "mean over epochs of the across-seed std of validation top-1 (one number per method). "
                "mean ± std over seeds, population std.")


def metric_tables(summary: Mapping[str, Mapping[str, Any]], level: str = "##") -> str:
    """Two Markdown tables of per-method summaries (:func:`summarise`): accuracy / calibration / stability, then
    explanation quality."""
    def rows(columns: Sequence[tuple[str, str, int, bool]]) -> list[list[str]]:
        return [[m, str(len(s["seeds"])), *(pm(s[k], d, sci) for k, _, d, sci in columns)] for m, s in summary.items()]

    return "\n".join([
        f"{level} Accuracy, calibration, training stability", "",
        table(rows(COLUMNS_MAIN), ["method", "seeds", *(h for _, h, _, _ in COLUMNS_MAIN)]), "",
        f"{level} Explanation quality", "",
        table(rows(COLUMNS_EXPLAIN), ["method", "seeds", *(h for _, h, _, _ in COLUMNS_EXPLAIN)]), "",
    ])


def write_results(results_dir: str | Path, name: str, payload: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``<results_dir>/<name>.json`` (with the machine description) and ``<name>.md``."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n")
    md_path.write_text(markdown.rstrip("\n") + "\n")
    return json_path, md_path


def _main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/grid.py evaluate RUN [--samples N] [--device D] [--options JSON]`` and
    ``python benchmarks/grid.py run CONFIG [--torchrun N] [--samples N] [--device D] [--options JSON]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Evaluate a grid run folder, or bring a run up to date.")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="evaluate one run folder (writes <run>/eval/eval.json)")
    evaluate.add_argument("run", help="run folder")
    run = commands.add_parser("run", help="train (or resume) the run of a config file unless finished, then "
                                          "evaluate it unless evaluated (what a cluster task executes)")
    run.add_argument("config", help="TrainConfig JSON file (its `out` is the run folder)")
    run.add_argument("--torchrun", type=int, default=None, metavar="N", help="train under torchrun with N processes")
    for sub in (evaluate, run):
        sub.add_argument("--samples", type=int, default=None, help="test images (default: all)")
        sub.add_argument("--device", default="cpu", help="evaluation device")
        sub.add_argument("--options", type=json.loads, default=None, help="per-metric options as JSON")
    args = parser.parse_args(argv)
    if args.command == "run":
        config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
        done = run_in_process(GridRun("task", config.method, config.seed, config), args.samples, args.device,
                              args.options, torchrun=args.torchrun)
        print(f"{config.out} up to date: trained {done['trained']}, evaluated {done['evaluated']}")
        return 0
    result = evaluate_folder(args.run, args.samples, args.device, args.options)
    print(f"evaluated {result['evaluation']['images']} images of {args.run} in "
          f"{result['timing']['total_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
