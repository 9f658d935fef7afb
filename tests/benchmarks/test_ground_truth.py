"""``benchmarks/ground_truth.py``: the grid, the numbers it reads from the evaluations, and a ``--quick`` smoke run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ground_truth  # noqa: E402

from exaug.evaluation.compare import paired_differences  # noqa: E402


def test_default_grid_is_the_study(tmp_path):
    args = ground_truth.parse_args(["--out", str(tmp_path)])
    runs = ground_truth.build_grid(args)
    assert ground_truth.STUDY_METHODS[:6] == ("ce", "supcon", "excon", "exconb", "edda", "cgc")
    assert {"saliencymix", "snapmix", "sgt", "cutmix", "mixup"} <= set(ground_truth.STUDY_METHODS)
    assert len(runs) == len(ground_truth.STUDY_METHODS) * 2 * 5 and len({r.folder for r in runs}) == len(runs)
    for run in runs:
        c = run.config
        assert (c.dataset, c.model, c.image_size, c.method, c.seed) == ("synthetic", "resnet18", 32, run.method,
                                                                         run.seed)
        assert c.eval_samples == 200 and c.val_fraction == 0  # validation on the first test images only
        cue = run.setting == "cue"
        assert c.dataset_options == {"num_classes": 6, **({"spurious": True, "spurious_strength": 0.9} if cue
                                                            else {})}
    assert args.explainer_layer == "encoder.layer2.1.conv2"
    assert [name for name, *_ in ground_truth.evaluations("nocue")] == ["eval"]
    assert [name for name, *_ in ground_truth.evaluations("cue")] == ["eval", "eval_flipped"]


def test_arguments_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ground_truth.parse_args(["--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ground_truth.parse_args(["--methods", "supcon_ori"])
    args = ground_truth.parse_args(["--quick", "--epochs", "2", "--jobs", "2"])
    assert args.epochs == 2 and args.seeds == 2 and args.threads == 1  # explicit flags win over --quick's


def _write_eval(folder: Path, name: str, metrics: dict) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "eval.json").write_text(json.dumps({"metrics": metrics}))


def test_collect_and_tables_from_eval_files(tmp_path):
    args = ground_truth.parse_args(["--out", str(tmp_path), "--methods", "ce", "supcon", "exconb", "--seeds", "3"])
    grid = ground_truth.build_grid(args)
    for run in grid:
        offset = {"ce": 0.0, "supcon": 0.1, "exconb": 0.2}[run.method] + 0.01 * run.seed
        _write_eval(run.folder, "eval", {
            "accuracy": {"top1": 0.5 + offset},
            "localisation": {"pointing_game": 0.4 + offset, "relevance_mass": 0.3, "relevance_rank": 0.35},
            "randomisation": {"steps": ["classifier", "encoder.layer4"], "spearman": [0.5, 0.2], "ssim": [0.6, None]}})
        if run.setting == "cue":
            _write_eval(run.folder, "eval_flipped", {"accuracy": {"top1": 0.2 + offset},
                                                     "localisation": {"relevance_mass": 0.1, "pointing_game": 0.05}})
    values = {run.name: ground_truth.collect(run) for run in grid}
    cue = values["cue/exconb/seed1"]
    assert cue["top1"] == pytest.approx(71.0) and cue["top1_flipped"] == pytest.approx(41.0)
    assert (cue["cue_mass"], cue["cue_pointing"], cue["mprt_spearman"], cue["mprt_ssim"]) == (0.1, 0.05, 0.2, None)
    plain = values["nocue/ce/seed0"]
    assert plain["top1_flipped"] is None and plain["cue_mass"] is None and plain["pointing_game"] == 0.4
    tables = ground_truth.seed_tables(grid, values, "cue")
    assert tables["top1"]["exconb"] == {0: pytest.approx(70.0), 1: pytest.approx(71.0), 2: pytest.approx(72.0)}
    # exconb - supcon is +10 points on every seed: significant; the pairing is the compare helpers'.
    diff = paired_differences(tables["top1"], "supcon")["exconb"]
    assert diff.mean == pytest.approx(10.0) and diff.n == 3 and diff.significant
    assert ground_truth.references(tables) == [("ce", ["ce", "supcon", "exconb"]), ("supcon", ["supcon", "exconb"])]
    text = ground_truth.render({"nocue": ground_truth.seed_tables(grid, values, "nocue"), "cue": tables}, args)
    assert "Paired differences against `ce`" in text and "Paired differences against `supcon`" in text
    nocue_part, cue_part = text.split("## Spurious cue")
    assert "flipped cue" not in nocue_part.split("## No cue")[1] and "top-1 flipped cue" in cue_part
    assert "| exconb | 3 | 71.00 ± 0.82 |" in cue_part  # mean ± population std of 70, 71, 72
    assert "+10.00 ± 0.00 (n=3)" in cue_part


@pytest.mark.slow
def test_quick_run_writes_results_and_resumes(tmp_path):
    argv = ["--quick", "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")]
    out = ground_truth.main(argv)
    payload = json.loads((tmp_path / "res" / "ground_truth.json").read_text())
    assert set(payload["runs"]) == {f"{s}/{m}/seed{k}" for s in ("nocue", "cue") for m in ("ce", "supcon", "exconb")
                                    for k in (0, 1)}
    assert set(out["estimate"]["seconds_per_epoch"]) == {"ce", "supcon", "exconb"}
    for name, run in payload["runs"].items():
        assert 0.0 <= run["top1"] <= 100.0 and 0.0 <= run["relevance_mass"] <= 1.0
        assert run["mprt_spearman"] is not None
        assert (run["top1_flipped"] is not None) == name.startswith("cue/")
        assert (run["cue_mass"] is not None) == name.startswith("cue/")
    assert payload["summary"]["cue"]["top1"]["exconb"]["n"] == 2
    assert set(payload["paired"]["cue"]) == {"ce", "supcon"}
    evaluation = json.loads((tmp_path / "runs" / "cue" / "ce" / "seed0" / "eval_flipped" / "eval.json").read_text())
    assert evaluation["evaluation"]["held_out"] is True and evaluation["explainer"]["name"] == "gradcam"
    assert evaluation["settings"]["localisation"]["target"] == "predicted"
    text = (tmp_path / "res" / "ground_truth.md").read_text()
    assert "## Spurious cue" in text and "MPRT Spearman" in text
    # Everything is done: a second call trains and evaluates nothing, and estimates nothing.
    again = ground_truth.main(argv)
    assert again["done"] == [] and again["estimate"] is None
