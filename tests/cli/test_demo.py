from __future__ import annotations

import hashlib
import json
import re

import pytest

from exaug.cli import main
from exaug.cli.demo import QUICK_SETTINGS
from exaug.training.logger import read_metrics


@pytest.mark.slow
def test_quick_demo_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    report = (out / "report.md").read_text()
    for method in ("supcon", "excon", "exconb"):
        assert f"| {method} |" in report
    for name in ("curves.png", "masks.png"):
        assert (out / name).stat().st_size > 1000
        assert f"({name})" in report
    warmup = json.loads((out / "warmup" / "summary.json").read_text())
    assert warmup["status"] == "stopped" and warmup["epochs_completed"] == QUICK_SETTINGS["exp_start_epoch"]
    routing = {}
    for method in ("supcon", "excon", "exconb"):
        summary = json.loads((out / method / "summary.json").read_text())
        assert summary["status"] == "finished" and 0 <= summary["best_val_top1"] <= 100
        # Every branch starts from the one shared warm-up, at its last epoch.
        assert summary["branched_from"]["epoch"] == QUICK_SETTINGS["exp_start_epoch"]
        assert summary["branched_from"]["sha256"] == hashlib.sha256((out / "warmup" / "last.pt").read_bytes()).hexdigest()
        routing[method] = [r for r in read_metrics(out / method)]
    # The routing table has one row per epoch, and its "masks correct" cells are the logged fractions.
    for row in routing["exconb"]:
        assert f"| {row['epoch'] + 1} | branches |" in report
        assert f"{100 * row['masked_correct']:.1f}" in report
    assert all("masked_correct" not in r for r in routing["supcon"])
    # The masks figure's caption counts both outcomes, and they add up to what was shown.
    shown = re.search(r"(\d+) positives \(left, green\) and (\d+) backgrounds", report)
    assert shown and 1 <= int(shown[1]) + int(shown[2]) <= 8
    assert "report:" in capsys.readouterr().out
    # Running it again starts afresh instead of refusing the existing folders.
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda:7"], "device 'cuda:7'"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_demo_usage_errors_before_training(argv, message, tmp_path, capsys):
    (tmp_path / "FILE").write_text("")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    assert main(["demo", "--quick", "--device", "cpu", *argv]) == 2  # the last --device wins
    err = capsys.readouterr().err
    assert err.startswith("exaug demo: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "exaug-demo").exists()
