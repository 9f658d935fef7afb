"""Submit a benchmark grid to Slurm as one job array through submitit (``pip install "exaug[cluster]"``).

Every run that is not finished and evaluated becomes one array task (one run on ``--torchrun N`` GPUs, or one
GPU) that executes ``python benchmarks/grid.py run CONFIG``: that command decides *when the task starts* what the
run folder still needs (:func:`grid.run_in_process`): a finished run is only evaluated, an interrupted one
resumes from ``last.pt``, a new one trains. So a grid submitted again skips what is done and resumes what is
partial, exactly like the in-process and ``--gpus`` modes; and a task that hits the Slurm time limit or is
preempted is requeued by submitit (``GridTask.checkpoint``) and resumes from its last epoch.

    python benchmarks/reproduce_cifar100.py --submit slurm --slurm-partition gpu --slurm-time 1440 ...
    python benchmarks/reproduce_cifar100.py --submit slurm --torchrun 4 ...   # a torchrun group of 4 GPUs per task
    python benchmarks/cifar10_cpu.py --quick --submit local --wait             # submitit's local executor

``--submit local`` runs the tasks as local processes (submitit's ``LocalExecutor``, for testing the wiring);
``--submit debug`` runs them one after the other in this process. Logs and job files go to ``--submit-folder``
(default ``<out>/submitit``), with ``submitted.json`` listing the job ids of the last submission. Do not submit a
grid again while its previous array is still running: two tasks would then work on the same run folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["CLUSTERS", "GridTask", "add_submit_arguments", "executor_parameters", "submit_grid", "submit_runs",
           "task_command"]

#: ``--submit`` values: submitit's ``AutoExecutor`` clusters (``auto``: Slurm when ``sbatch`` is available,
#: else local).
CLUSTERS: tuple[str, ...] = ("auto", "slurm", "local", "debug")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), value


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--submit`` options every grid script shares."""
    group = parser.add_argument_group("cluster (submitit, one job-array task per run)")
    group.add_argument("--submit", choices=CLUSTERS, default=None,
                       help="submit the unfinished runs as a job array instead of running them here")
    group.add_argument("--submit-folder", type=Path, default=None,
                       help="submitit's job files and logs (default: <out>/submitit)")
    group.add_argument("--wait", action="store_true", help="wait for the submitted tasks and report failures")
    group.add_argument("--slurm-partition", default=None, help="Slurm partition")
    group.add_argument("--slurm-account", default=None, help="Slurm account")
    group.add_argument("--slurm-qos", default=None, help="Slurm QOS")
    group.add_argument("--slurm-time", type=int, default=1440,
                       help="minutes per task; a task that hits the limit is requeued and resumes (default 1440)")
    group.add_argument("--slurm-cpus-per-task", type=int, default=8, help="CPU cores per task (DataLoader workers)")
    group.add_argument("--slurm-mem-gb", type=int, default=None, help="memory per task in GB")
    group.add_argument("--slurm-array-parallelism", type=int, default=64,
                       help="array tasks that may run at the same time")
    group.add_argument("--slurm-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. constraint=a100 (repeatable)")


def executor_parameters(args: argparse.Namespace, gpus_per_task: int, name: str) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` keywords: one node, one process per task (``torchrun`` starts the
    group's processes itself), ``gpus_per_task`` GPUs."""
    params: dict[str, Any] = {
        "name": name, "timeout_min": args.slurm_time, "nodes": 1, "tasks_per_node": 1,
        "cpus_per_task": args.slurm_cpus_per_task, "gpus_per_node": gpus_per_task,
        "slurm_array_parallelism": args.slurm_array_parallelism,
    }
    if args.slurm_mem_gb is not None:
        params["mem_gb"] = args.slurm_mem_gb
    for key in ("partition", "account", "qos"):
        value = getattr(args, f"slurm_{key}")
        if value is not None:
            params[f"slurm_{key}"] = value
    if args.slurm_option:
        params["slurm_additional_parameters"] = dict(args.slurm_option)
    return params


def task_command(config_file: str | Path, *, torchrun: int | None = None, eval_samples: int | None = None,
                 eval_device: str = "cpu", eval_options: Mapping[str, Any] | None = None) -> list[str]:
    """``python benchmarks/grid.py run CONFIG ...``: bring one run up to date (train / resume, then evaluate)."""
    command = [sys.executable, str(Path(__file__).resolve().with_name("grid.py")), "run", str(config_file),
               "--device", eval_device]
    if torchrun:
        command += ["--torchrun", str(torchrun)]
    if eval_samples is not None:
        command += ["--samples", str(eval_samples)]
    return command + (["--options", json.dumps(eval_options)] if eval_options else [])


class GridTask:
    """One array task: run ``command`` (output streamed to the task's log); requeued on timeout or preemption.

    Pickled by value (this file is not an installed module), so it uses only the standard library and submitit.
    """

    def __init__(self, name: str, command: Sequence[str], cwd: str | Path) -> None:
        self.name = name
        self.command = list(command)
        self.cwd = str(cwd)

    def __call__(self) -> str:
        print(f"{self.name}: {' '.join(self.command)}", flush=True)
        code = subprocess.call(self.command, cwd=self.cwd)
        if code:
            raise RuntimeError(f"{self.name} failed (exit {code}); submit the grid again to resume it")
        return self.name

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this before the time limit or on preemption: requeue the same task (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def submit_runs(tasks: Sequence[tuple[str, list[str]]], args: argparse.Namespace, *, folder: str | Path,
                gpus_per_task: int, cwd: str | Path, name: str = "exaug-grid") -> list[Any]:
    """Submit ``(run name, command)`` tasks as one job array; returns submitit's jobs (``[]`` when none).

    Writes ``<folder>/submitted.json`` (cluster, job ids, run names); with ``args.wait`` waits for every task and
    raises ``SystemExit`` naming the failed runs.
    """
    try:
        import cloudpickle
        import submitit
    except ImportError as err:
        raise SystemExit('--submit needs submitit: pip install "exaug[cluster]" (or submitit)') from err
    folder = Path(folder)
    if not tasks:
        print("nothing to submit: every run is finished and evaluated", flush=True)
        return []
    # GridTask lives in this script, which the task's Python cannot import: send the class itself.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=None if args.submit == "auto" else args.submit)
    executor.update_parameters(**executor_parameters(args, gpus_per_task, name))
    with executor.batch():
        jobs = [executor.submit(GridTask(run, command, cwd)) for run, command in tasks]
    record = {"cluster": executor.cluster, "jobs": {run: job.job_id for (run, _), job in zip(tasks, jobs)}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submitted.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"submitted {len(jobs)} task(s) to {executor.cluster} (job files and logs: {folder})", flush=True)
    if args.wait:
        failed = []
        for (run, _), job in zip(tasks, jobs):
            try:
                job.result()
            except Exception as error:  # noqa: BLE001 - report every failed task, then stop
                failed.append(run)
                print(f"{run} FAILED: {str(error).strip().splitlines()[-1] if str(error).strip() else error}",
                      file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(f"{len(failed)} task(s) failed: {', '.join(failed)}; logs in {folder}; submit again "
                             "to resume them")
    return jobs


def submit_grid(runs: Sequence[Any], args: argparse.Namespace, *, folder: str | Path, gpus_per_task: int,
                torchrun: int | None = None, eval_samples: int | None = None, eval_device: str = "cpu",
                eval_options: Mapping[str, Any] | None = None) -> list[Any]:
    """Submit every run of ``runs`` (:class:`grid.GridRun`) that is not finished and evaluated, one task each.

    ``gpus_per_task``: 0 on CPU, 1 per run, or the ``torchrun`` group size. Each run's config goes to ``<folder>/configs/<run>.json``; a folder holding a run with other options fails
    here, before anything is submitted (:func:`grid.check_same_run`).
    """
    from grid import REPO, check_same_run, is_evaluated, run_status, write_config

    folder = Path(folder)
    tasks = []
    for run in runs:
        check_same_run(run.config)
        if run_status(run.folder) == "finished" and is_evaluated(run.folder):
            continue
        path = write_config(run.config, folder / "configs" / f"{run.name.replace('/', '_')}.json")
        tasks.append((run.name, task_command(path, torchrun=torchrun, eval_samples=eval_samples,
                                             eval_device=eval_device, eval_options=eval_options)))
    print(f"{len(runs) - len(tasks)} of {len(runs)} runs are finished and evaluated (skipped)", flush=True)
    return submit_runs(tasks, args, folder=folder, gpus_per_task=gpus_per_task, cwd=REPO)
