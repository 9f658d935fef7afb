from __future__ import annotations

import json

import pytest

from exaug.cli import main


@pytest.mark.slow
def test_quick_demo_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    report = (out / "report.md").read_text()
    assert "| supcon |" in report and "| exconb |" in report
    for name in ("curves.png", "masks.png"):
        assert (out / name).stat().st_size > 1000
        assert f"({name})" in report
    for method in ("supcon", "exconb"):
        summary = json.loads((out / method / "summary.json").read_text())
        assert summary["status"] == "finished" and 0 <= summary["best_val_top1"] <= 100
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
