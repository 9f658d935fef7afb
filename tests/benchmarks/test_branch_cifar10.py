"""Smoke test of ``benchmarks/branch_cifar10.py``: the ``--quick`` study on synthetic data, its resumability,
the paired differences against a naive per-seed computation, and ``--estimate-only``."""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import branch_cifar10  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("branch")
    argv = ["--quick", "--no-estimate", "--out", str(root / "runs"), "--results-dir", str(root / "res")]
    return root, argv, branch_cifar10.main(argv)


@pytest.mark.slow
def test_quick_study_branches_every_method_from_its_warm_up(study):
    root, _, result = study
    payload = json.loads((root / "res" / "branch_cifar10.json").read_text())
    assert (root / "res" / "branch_cifar10.md").read_text().startswith("# Branch study")
    for seed in (0, 1):
        for family, methods in branch_cifar10.FAMILIES.items():
            warm = root / "runs" / f"seed{seed}" / f"warmup-{family}"
            assert json.loads((warm / "summary.json").read_text())["status"] == "stopped"
            digest = hashlib.sha256((warm / "last.pt").read_bytes()).hexdigest()
            for method in methods:
                origin = json.loads((root / "runs" / f"seed{seed}" / method / "config.json").read_text())
                assert origin["method"] == method and origin["resolved"]["branched_from"]["sha256"] == digest
                assert origin["resolved"]["branched_from"]["epoch"] == 1
            at = payload["branch_time"][family][str(seed)]
            assert at["epoch"] == 1 and 0.0 <= at["masked_correct"] <= 1.0
    # The paired differences against a naive per-seed computation from the per-seed values.
    for key, *_ in branch_cifar10.COLUMNS:
        for method, reference in (("excon", "supcon"), ("exconb", "supcon"), ("edda", "ce")):
            values = result["values"][key]
            diffs = [values[method][s] - values[reference][s] for s in (0, 1)]
            got = result["paired"][key][method]
            assert got["n"] == 2 and got["mean"] == pytest.approx(statistics.mean(diffs))
            assert got["sem"] == pytest.approx(statistics.stdev(diffs) / 2 ** 0.5)
        assert "supcon" not in result["paired"][key] and "ce" not in result["paired"][key]
    assert set(result["routing"]) == {"excon", "exconb"} and set(result["routing"]["excon"]) == {1}


@pytest.mark.slow
def test_running_the_study_again_trains_and_evaluates_nothing(study):
    root, argv, _ = study
    files = sorted((root / "runs").rglob("last.pt"))
    before = {p: p.stat().st_mtime_ns for p in files}
    again = branch_cifar10.main([*argv, "--jobs", "2"])  # also the process-pool path
    assert not any(d["trained"] or d["evaluated"] for d in again["done"]) and len(again["done"]) == 14
    assert {p: p.stat().st_mtime_ns for p in files} == before


@pytest.mark.slow
def test_estimate_only_prints_the_table(tmp_path, capsys):
    result = branch_cifar10.main(["--quick", "--estimate-only", "--jobs", "2", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert "min / run" in text and "warm-up supcon" in text and "branch exconb" in text
    info = result["estimate"]
    assert info["wall_seconds"] >= info["total_seconds"] / 2 > 0
    assert not list(tmp_path.iterdir())  # nothing trained into --out


def test_a_missing_zip_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="missing.zip.*not found"):
        branch_cifar10.parse_args(["--data", str(tmp_path / "missing.zip")])
    with pytest.raises(SystemExit):
        branch_cifar10.parse_args(["--quick", "--seeds", "0"])
