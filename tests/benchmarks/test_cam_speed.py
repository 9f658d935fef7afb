"""Smoke run of ``benchmarks/cam_speed.py --quick`` (no timing assertions: speed figures live in the JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cam_speed  # noqa: E402


def test_quick_run_writes_every_method(tmp_path, capsys):
    pytest.importorskip("pytorch_grad_cam")
    output = tmp_path / "cam_speed.json"
    payload = cam_speed.main(["--quick", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert saved["config"]["quick"] is True and saved["rows"] == payload["rows"]
    assert [row["method"] for row in saved["rows"]] == list(cam_speed.METHODS)
    assert all(row["native_s"] > 0 and row["pgc_s"] > 0 for row in saved["rows"])
    assert "pgc / native" in capsys.readouterr().out
