"""``--submit``: grids as job arrays through submitit, with the grid's resume rules (tested with the local executor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cifar10_cpu  # noqa: E402
import cluster  # noqa: E402
import grid  # noqa: E402
import reproduce_cifar100 as reproduce  # noqa: E402

from exaug.training import Trainer  # noqa: E402


def test_slurm_parameters_and_task_commands(tmp_path):
    args = reproduce.parse_args(["--out", str(tmp_path), "--submit", "slurm", "--torchrun", "4", "--slurm-partition",
                                 "gpu", "--slurm-time", "600", "--slurm-option", "constraint=a100",
                                 "--slurm-array-parallelism", "8"])
    params = cluster.executor_parameters(args, 4, "exaug-grid")
    assert params == {"name": "exaug-grid", "timeout_min": 600, "nodes": 1, "tasks_per_node": 1,
                      "cpus_per_task": 8, "gpus_per_node": 4, "slurm_array_parallelism": 8,
                      "slurm_partition": "gpu", "slurm_additional_parameters": {"constraint": "a100"}}
    command = cluster.task_command("cfg.json", torchrun=4, eval_samples=100, eval_device="cuda",
                                   eval_options={"calibration": {"corruptions": []}})
    assert command[1:] == [str(BENCHMARKS / "grid.py"), "run", "cfg.json", "--device", "cuda", "--torchrun", "4",
                           "--samples", "100", "--options", '{"calibration": {"corruptions": []}}']
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--submit", "slurm", "--gpus", "0,1"])


def _interrupt_after_first_epoch(trainer, row):
    raise KeyboardInterrupt


@pytest.mark.slow
def test_local_submission_skips_finished_runs_and_resumes_partial_ones(tmp_path):
    pytest.importorskip("submitit")
    common = ["--quick", "--data", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "runs"), "--methods",
              "supcon", "--seeds", "2", "--epochs", "2", "--results-dir", str(tmp_path / "results"),
              "--no-estimate"]
    args = cifar10_cpu.parse_args(common)
    finished, partial = cifar10_cpu.build_grid(args)
    # seed 0: finished and evaluated; seed 1: interrupted after its first epoch (last.pt, no finished summary).
    grid.run_in_process(finished, args.test_samples, eval_options=cifar10_cpu.eval_options(args))
    trainer = Trainer(partial.config, callbacks=[_interrupt_after_first_epoch])
    assert trainer.fit()["status"] == "interrupted"
    trainer.close()
    assert grid.run_status(partial.folder) == "partial"
    first_row = grid.read_run_record(partial.folder)["val_top1"]
    finished_stamp = (finished.folder / "summary.json").stat().st_mtime_ns

    result = cifar10_cpu.main([*common, "--submit", "local", "--wait"])
    submitted = json.loads((tmp_path / "runs" / "submitit" / "submitted.json").read_text())
    assert submitted["cluster"] == "local" and list(submitted["jobs"]) == [partial.name]
    assert (finished.folder / "summary.json").stat().st_mtime_ns == finished_stamp  # untouched
    assert grid.run_status(partial.folder) == "finished" and grid.is_evaluated(partial.folder)
    rows = [json.loads(line) for line in (partial.folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    # Resumed, not retrained: epoch 0's row is the one written before the interruption.
    assert grid.read_run_record(partial.folder)["val_top1"][0] == first_row[0]
    assert result["methods"]["supcon"]["seeds"] == [0, 1]

    # Submitting the finished grid again submits nothing.
    again = cifar10_cpu.main([*common, "--submit", "local", "--wait"])
    assert again["methods"]["supcon"]["seeds"] == [0, 1]
    assert json.loads((tmp_path / "runs" / "submitit" / "submitted.json").read_text()) == submitted
