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
    # Paired tables against CutMix (CE is not in the quick run), equal to a naive per-seed difference.
    paired = payload["paired"]["cutmix"]["top1"]
    for method in ("saliencymix", "snapmix"):
        row = payload["methods"][method]
        reference = dict(zip(payload["methods"]["cutmix"]["seeds"], payload["methods"]["cutmix"]["top1"]["values"]))
        diffs = [v - reference[s] for s, v in zip(row["seeds"], row["top1"]["values"])]
        assert paired[method]["n"] == len(diffs) == 2
        assert paired[method]["mean"] == pytest.approx(sum(diffs) / len(diffs))
    text = (tmp_path / "res" / "saliency_mix_cpu.md").read_text()
    assert "## Paired differences against cutmix" in text and "## Paired differences against ce" not in text


def test_tables_only_rewrites_the_paired_section_once(tmp_path):
    """--tables-only on a hand-made study: the tables are replaced, never appended twice."""
    methods = {m: {"seeds": [0, 1], **{key: {"values": values} for key, *_ in saliency_mix_cpu.PAIRED_COLUMNS}}
               for m, values in (("ce", [30.0, 32.0]), ("cutmix", [31.0, 31.0]), ("snapmix", [29.0, 33.0]))}
    (tmp_path / "saliency_mix_cpu.json").write_text(json.dumps({"methods": methods}))
    (tmp_path / "saliency_mix_cpu.md").write_text("# study\n\nmean table\n")
    for _ in range(2):
        saliency_mix_cpu.main(["--tables-only", "--results-dir", str(tmp_path)])
    text = (tmp_path / "saliency_mix_cpu.md").read_text()
    assert text.startswith("# study\n\nmean table\n") and text.count("## Paired differences against ce") == 1
    snapmix_vs_ce = json.loads((tmp_path / "saliency_mix_cpu.json").read_text())["paired"]["ce"]["top1"]["snapmix"]
    assert snapmix_vs_ce["mean"] == pytest.approx(0.0) and snapmix_vs_ce["n"] == 2  # (-1 + 1) / 2
