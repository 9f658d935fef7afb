"""Paired differences ± SEM against a reference method: numpy on hand-made numbers, the tables, ``compare_runs``
and ``exaug compare --reference`` on tiny evaluated runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from exaug.cli import main
from exaug.evaluation import compare_runs
from exaug.evaluation.compare import (
    PAIRED_LEGEND,
    PairedDifference,
    format_paired,
    paired_differences,
    paired_table,
    summary_tables,
)

TABLE = {
    "supcon": {0: 30.0, 1: 32.5, 2: 31.0, 3: 29.0, 4: None},
    "exconb": {0: 31.5, 1: 33.0, 2: 33.5, 3: 30.5, 4: 35.0, 9: 50.0},  # seed 4: no reference value; 9: unpaired
    "excon": {2: 30.0, 0: 31.0, 1: 31.0},  # a noisy, insignificant difference; other seed order
    "ce": {7: 10.0},  # no common seed
    "edda": {1: 33.0},  # one common seed
}


def _numpy(method: str) -> tuple[float, float, int]:
    seeds = [s for s, v in TABLE[method].items() if v is not None and TABLE["supcon"].get(s) is not None]
    diffs = np.array([TABLE[method][s] - TABLE["supcon"][s] for s in seeds])
    return diffs.mean(), diffs.std(ddof=1) / np.sqrt(len(diffs)), len(diffs)


def test_paired_differences_match_numpy():
    diffs = paired_differences(TABLE, "supcon")
    assert list(diffs) == ["exconb", "excon", "ce", "edda"]
    for method in ("exconb", "excon"):
        mean, sem, n = _numpy(method)
        d = diffs[method]
        assert d.mean == pytest.approx(mean) and d.sem == pytest.approx(sem) and d.n == n
        assert d.significant == (abs(mean) > 2 * sem)
    assert diffs["exconb"].seeds == (0, 1, 2, 3) and diffs["exconb"].significant  # +1.5 ± 0.35
    assert diffs["excon"].seeds == (2, 0, 1) and not diffs["excon"].significant
    assert diffs["ce"] == PairedDifference("ce", "supcon", None, None, 0, ())
    assert diffs["edda"].mean == pytest.approx(0.5) and diffs["edda"].sem is None and not diffs["edda"].significant


def test_formatting_flags_insignificant_differences():
    diffs = paired_differences(TABLE, "supcon")
    mean, sem, _ = _numpy("exconb")
    assert format_paired(diffs["exconb"]) == f"+{mean:.2f} ± {sem:.2f} (n=4)"
    mean, sem, _ = _numpy("excon")
    assert format_paired(diffs["excon"], 3) == f"~ {'+' if mean >= 0 else '-'}{abs(mean):.3f} ± {sem:.3f} (n=3)"
    assert format_paired(diffs["edda"]) == "~ +0.50 (n=1)"
    assert format_paired(diffs["ce"]) == "n/a"
    lines = paired_table({"top1": TABLE}, "supcon", [("top1", "top-1 (%)", "higher", 2, False)])
    assert lines[-2] == PAIRED_LEGEND and "| exconb | +" in "\n".join(lines)


def test_summary_tables_mean_std_and_seed_counts():
    text = summary_tables({"top1": TABLE}, [("top1", "top-1 (%)", "higher", 2, False)], reference="supcon")
    first = text.split("Paired differences")[0]  # the mean ± std table (the paired one repeats method names)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in first.splitlines() if line.startswith("| ") and "---" not in line}
    supcon = np.array([30.0, 32.5, 31.0, 29.0])
    assert rows["supcon"][1:3] == ["4", f"{supcon.mean():.2f} ± {supcon.std():.2f}"]
    assert rows["ce"][1:3] == ["1", "10.00"]
    assert "Paired differences against `supcon`" in text
    with pytest.raises(ValueError, match="reference method 'sup' is not among"):
        paired_differences(TABLE, "sup")


def _eval_top1(folder) -> float:
    return 100 * json.loads((folder / "eval" / "eval.json").read_text())["metrics"]["accuracy"]["top1"]


def _as_seed(folder, target, seed: int):
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.pt"))
    config = json.loads((target / "config.json").read_text())
    config["seed"] = seed
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_compare_runs_pairs_by_seed(evaluated_runs, tmp_path):
    # A second SupCon "seed 4" (a copy of seed 3), so ExConB pairs on seeds 3 and 4.
    supcon4 = _as_seed(evaluated_runs["supcon_s3"], tmp_path / "supcon_s4", 4)
    folders = [evaluated_runs["exconb_s3"], evaluated_runs["exconb_s4"], evaluated_runs["supcon_s3"], supcon4]
    text = compare_runs(folders, out=tmp_path / "out")
    diffs = np.array([_eval_top1(evaluated_runs[f"exconb_s{s}"]) - _eval_top1(evaluated_runs["supcon_s3"])
                      for s in (3, 4)])
    diff = PairedDifference("exconb", "supcon", diffs.mean(), diffs.std(ddof=1) / np.sqrt(2), 2, (3, 4))
    line = next(line for line in text.splitlines() if line.startswith("| exconb |") and "(n=2)" in line)
    assert line.split("|")[2].strip() == format_paired(diff)
    assert "Paired differences against `supcon`" in text and PAIRED_LEGEND in text
    paired = json.loads((tmp_path / "out" / "compare.json").read_text())["paired"]
    got = paired["differences"]["top1"]["exconb"]
    assert paired["reference"] == "supcon" and got["seeds"] == [3, 4] and got["n"] == 2
    assert got["mean"] == pytest.approx(diff.mean) and got["sem"] == pytest.approx(diff.sem)

    # The reference can be any compared method; an unknown one is a clear error.
    against_exconb = compare_runs(folders, reference="exconb")
    assert "Paired differences against `exconb`" in against_exconb and "| supcon |" in against_exconb
    with pytest.raises(ValueError, match="reference method 'excon' is not among"):
        compare_runs(folders, reference="excon")


def test_shared_seeds_cannot_be_paired(evaluated_runs, tmp_path):
    twin = _as_seed(evaluated_runs["exconb_s4"], tmp_path / "exconb_twin", 3)  # two ExConB runs with seed 3
    text = compare_runs([evaluated_runs["exconb_s3"], twin, evaluated_runs["supcon_s3"]])
    assert "Paired differences" not in text and "cannot be paired by seed" in text


def test_cli_reference(evaluated_runs, capsys):
    folders = [str(evaluated_runs[k]) for k in ("exconb_s3", "supcon_s3")]
    assert main(["compare", *folders, "--reference", "exconb"]) == 0
    assert "Paired differences against `exconb`" in capsys.readouterr().out
    assert main(["compare", *folders, "--reference", "nope"]) == 2
