"""Smoke runs of the speed scripts (cache_memory, gpu_check, busy_machine) and the measured epoch time that
``reproduce_cifar100.py --estimate`` reads. No timed assertions: only that they run and report consistently."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import busy_machine  # noqa: E402
import cache_memory  # noqa: E402
import gpu_check  # noqa: E402
import reproduce_cifar100 as reproduce  # noqa: E402


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Redirect every script's results/ folder into tmp_path."""
    import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    return tmp_path


def test_cache_memory_quick(results, capsys):
    rows = cache_memory.main(["--quick"])["rows"]
    by = {(r["layout"], r["dtype"]): r for r in rows}
    assert by["native", "float32"]["map_size"] == [16, 16] and by["pixel", "float32"]["map_size"] == [32, 32]
    assert by["native", "float32"]["bytes_per_image"] == 16 * 16 * 4 + 9
    assert by["native", "uint8"]["bytes_per_image"] == 16 * 16 + 9
    assert by["native", "float32"]["max_abs_error"] == 0.0 and by["native", "float32"]["keep_flipped"] == 0.0
    assert json.loads((results / "cache_memory.quick.json").read_text())["rows"] == rows
    assert "bytes/image" in capsys.readouterr().out


def test_gpu_check_quick_on_cpu_feeds_the_estimate(results, tmp_path, capsys):
    payload = gpu_check.main(["--device", "cpu", "--quick"])
    loops = [r["loop"] for r in payload["rows"]]
    assert loops == ["exaug supcon", "exaug excon", "exaug exconb", "SupContrast-style (workers, fp32)"]
    assert payload["rows"][0]["ratio_to_supcon"] == 1.0 and all(r["step_seconds"] > 0 for r in payload["rows"])
    assert payload["epoch_seconds"] == payload["algorithm1_epoch_seconds"]["supcon"] > 0
    written = results / "gpu_check.quick.json"
    assert json.loads(written.read_text())["epoch_seconds"] == payload["epoch_seconds"]
    assert "x SupCon" in capsys.readouterr().out
    # reproduce_cifar100 --estimate uses the measured epoch when the JSON is there ...
    args = reproduce.parse_args(["--out", str(tmp_path), "--gpu-check", str(written), "--eval-minutes", "0"])
    assert args.epoch_seconds == payload["epoch_seconds"] and "measured by gpu_check.py" in args.epoch_seconds_source
    info = reproduce.estimate(args, reproduce.build_grid(args))
    assert info["epoch_seconds_source"] == args.epoch_seconds_source


def test_estimate_reads_a_measured_epoch_or_says_it_assumes_75(tmp_path, capsys):
    fake = tmp_path / "gpu_check.json"
    fake.write_text(json.dumps({"machine": {"cuda": "NVIDIA A100"}, "epoch_seconds": 42.0,
                                "settings": {"device": "cuda", "amp": "bf16", "channels_last": True}}))
    args = reproduce.parse_args(["--out", str(tmp_path), "--gpu-check", str(fake), "--eval-minutes", "0"])
    assert args.epoch_seconds == 42.0 and "NVIDIA A100" in args.epoch_seconds_source
    runs = reproduce.build_grid(args)
    assert reproduce.estimate(args, runs)["gpu_hours"] == pytest.approx(
        sum(reproduce.run_seconds(r, 42.0) for r in runs) / 3600)
    explicit = reproduce.parse_args(["--out", str(tmp_path), "--gpu-check", str(fake), "--epoch-seconds", "9"])
    assert (explicit.epoch_seconds, explicit.epoch_seconds_source) == (9.0, "--epoch-seconds")
    missing = reproduce.parse_args(["--out", str(tmp_path), "--gpu-check", str(tmp_path / "none.json")])
    assert missing.epoch_seconds == 75.0 and "ASSUMED" in missing.epoch_seconds_source
    reproduce.print_estimate(reproduce.estimate(missing, reproduce.build_grid(missing)))
    assert "ASSUMED" in capsys.readouterr().out


def test_busy_machine_quick_probe_and_demo_timing(results, monkeypatch, capsys):
    payload = busy_machine.main(["--quick", "--skip-demo"])
    assert [r["policy"] for r in payload["probe"]] == ["default", "PASSIVE"]
    assert all(r["alone_seconds"] > 0 and r["concurrent_seconds"] > 0 for r in payload["probe"])
    assert "2 concurrent loops s" in capsys.readouterr().out
    # The demo timing with a trivial command in place of `exaug demo` (the real one runs for minutes).
    seen = []

    def command(quick, out):
        seen.append((quick, out))
        return [sys.executable, "-c", "pass"]

    times = busy_machine.demo_times(True, None, command=command)
    assert seen == [(True, "idle"), (True, "busy")] and times["ratio"] == times["busy_seconds"] / times["idle_seconds"]
    assert busy_machine.demo_command(True, "x")[-3:] == ["--out", "x", "--quick"]
