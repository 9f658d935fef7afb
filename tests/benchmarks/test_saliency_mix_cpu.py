"""Smoke test of ``benchmarks/saliency_mix_cpu.py --quick`` (synthetic data) and its method list."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import saliency_mix_cpu  # noqa: E402


def test_study_methods():
    assert saliency_mix_cpu.STUDY_METHODS == ("ce", "cutmix", "mixup", "saliencymix", "keepcutout", "keepautoaugment",
                                              "attentive_cutmix", "snapmix", "sgt")


@pytest.mark.slow
def test_quick_run_writes_results(tmp_path):
    out = saliency_mix_cpu.main(["--quick", "--no-estimate", "--data", str(tmp_path / "missing.zip"),
                                 "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")])
    payload = json.loads((tmp_path / "res" / "saliency_mix_cpu.json").read_text())
    assert set(payload["methods"]) == {"cutmix", "saliencymix", "snapmix"}
    assert (tmp_path / "res" / "saliency_mix_cpu.md").is_file() and len(out["paths"]) == 2
