"""``compare_runs``: mean ± std over seeds per method, stability, n/a for runs without eval.json, files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from exaug.evaluation import compare_runs
from exaug.metrics import training_stability
from exaug.training.logger import read_metrics


def _eval_values(folder) -> dict[str, float]:
    m = json.loads((folder / "eval" / "eval.json").read_text())["metrics"]
    keep = m["drop_increase"]["keep"]["0.45"]
    return {"top1": 100 * m["accuracy"]["top1"], "drop_percent": keep["drop_percent"],
            "increase_percent": keep["increase_percent"], "infidelity": m["infidelity"]["mean"],
            "ece_clean": m["calibration"]["ece_clean"], "ece_fgsm": m["calibration"]["ece_fgsm"]}


def _val_top1(folder) -> list[float]:
    return [row["val_top1"] for row in read_metrics(folder)]


def _row(text: str, method: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip().strip("*") for cell in line.strip("|").split("|")]


def test_mean_and_std_over_seeds_match_numpy(evaluated_runs, tmp_path):
    folders = [evaluated_runs[k] for k in ("exconb_s3", "supcon_s3", "exconb_s4")]
    text = compare_runs(folders, out=tmp_path)
    assert (tmp_path / "compare.md").read_text() == text
    data = json.loads((tmp_path / "compare.json").read_text())
    methods = {m["method"]: m for m in data["methods"]}
    assert list(methods) == ["exconb", "supcon"]  # order of first appearance
    assert methods["exconb"]["seeds"] == [3, 4]

    exconb = [_eval_values(evaluated_runs[k]) for k in ("exconb_s3", "exconb_s4")]
    for key in exconb[0]:
        values = np.array([v[key] for v in exconb])
        agg = methods["exconb"]["values"][key]
        assert agg["mean"] == pytest.approx(values.mean()) and agg["std"] == pytest.approx(values.std())
        assert agg["n"] == 2
    supcon = _eval_values(evaluated_runs["supcon_s3"])
    assert methods["supcon"]["values"]["top1"]["mean"] == pytest.approx(supcon["top1"])
    assert methods["supcon"]["values"]["top1"]["std"] is None

    # Stability: the across-seed std of val top-1 at each epoch, averaged over epochs.
    curves = np.array([_val_top1(evaluated_runs[k]) for k in ("exconb_s3", "exconb_s4")])
    assert methods["exconb"]["values"]["stability"]["mean"] == pytest.approx(curves.std(axis=0).mean())
    assert methods["exconb"]["values"]["stability"]["mean"] == pytest.approx(training_stability(curves.tolist()))
    assert methods["supcon"]["values"]["stability"]["mean"] is None

    # The Markdown cells show the same numbers.
    headers = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    row = dict(zip(headers, _row(text, "exconb")))
    top1 = np.array([v["top1"] for v in exconb])
    assert row["top-1 (%) ↑"] == f"{top1.mean():.2f} ± {top1.std():.2f}"
    ece = np.array([v["ece_fgsm"] for v in exconb])
    assert row["ECE FGSM ↓"] == f"{ece.mean():.4f} ± {ece.std():.4f}"
    infid = np.array([v["infidelity"] for v in exconb])
    assert row["infidelity ↓"] == f"{infid.mean():.2e} ± {infid.std():.2e}"
    assert row["runs"] == "2 (seeds 3, 4)"
    supcon_row = dict(zip(headers, _row(text, "supcon")))
    assert supcon_row["top-1 (%) ↑"] == f"{supcon['top1']:.2f}"
    assert supcon_row["stability (val top-1 std) ↓"] == "n/a"
    assert "Notes:" not in text  # same settings everywhere, every run evaluated


def test_runs_without_eval_show_na_and_a_hint(evaluated_runs, tmp_path):
    copies = {}
    for key in ("supcon_s3", "exconb_s4"):
        copies[key] = tmp_path / f"{key}_not_evaluated"
        shutil.copytree(evaluated_runs[key], copies[key], ignore=shutil.ignore_patterns("eval", "*.pt"))
    text = compare_runs([copies["supcon_s3"], evaluated_runs["exconb_s3"], copies["exconb_s4"]])
    supcon = _row(text, "supcon")
    assert supcon[2] == "n/a" and supcon[3] != "n/a"  # no test top-1, but best val top-1 from summary.json
    exconb = _row(text, "exconb")
    assert exconb[2] == f"{_eval_values(evaluated_runs['exconb_s3'])['top1']:.2f} (n=1)"  # 1 of its 2 runs
    assert "±" in exconb[3] and "(n=" not in exconb[-1]  # summary.json and stability cover both seeds
    for copy in copies.values():
        assert f"`exaug evaluate --run {copy}`" in text


def test_compare_errors(evaluated_runs, tmp_path):
    with pytest.raises(ValueError, match="more than once"):
        compare_runs([evaluated_runs["exconb_s3"], evaluated_runs["exconb_s3"]])
    with pytest.raises(FileNotFoundError, match="not an exaug run folder"):
        compare_runs([tmp_path])
    with pytest.raises(ValueError, match="at least one"):
        compare_runs([])
