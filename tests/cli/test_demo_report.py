"""``exaug.cli.demo_report`` on hand-made histories: what the report says must follow from the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from exaug.cli.demo_report import plot_curves, write_report

SETTINGS = {"train_samples": 64, "eval_samples": 32, "width": 0.25, "batch_size": 16, "epochs": 3,
            "exp_start_epoch": 2, "mask_threshold": 0.5}


def rows(method, top1, masked=None):
    out = []
    for k, value in enumerate(top1):
        row = {"epoch": SETTINGS["exp_start_epoch"] + k, "val_top1": value}
        if masked is not None:
            row.update(masked_correct=masked[k], background_per_batch=16 * (1 - masked[k]))
        out.append(row)
    return out


WARMUP = [{"epoch": 0, "val_top1": 40.0}, {"epoch": 1, "val_top1": 61.25}]
BRANCHES = {"supcon": rows("supcon", [70.0]), "excon": rows("excon", [72.5], [0.8125]),
            "exconb": rows("exconb", [66.0], [0.75])}


def summaries(branches):
    return {m: {"final_val_top1": r[-1]["val_top1"], "best_val_top1": max(x["val_top1"] for x in r)}
            for m, r in branches.items()}


def report(tmp_path, branches=BRANCHES, quality=None):
    figures = {"curves": Path("curves.png"), "masks": Path("masks.png")}
    path = write_report(tmp_path, SETTINGS, WARMUP, branches, summaries(branches), quality or {}, figures, (3, 4),
                        90.0)
    return path.read_text()


def test_comparison_states_each_branch_against_supcon_with_its_sign(tmp_path):
    text = report(tmp_path)
    # 72.5 - 70 and 66 - 70: the words follow the signs, whichever method is ahead.
    assert "excon ends 2.5 points above SupCon" in text
    assert "exconb ends 4.0 points below SupCon" in text


def test_routing_table_has_every_epoch_and_the_logged_fractions(tmp_path):
    text = report(tmp_path)
    assert "| 1 | shared warm-up | 40.0 |" in text and "| 2 | shared warm-up | 61.2 |" in text
    # epoch 3: top-1 of the three branches, then 100 * masked_correct of excon / exconb, then background rows.
    assert "| 3 | branches | 70.0 | 72.5 | 66.0 | 81.2 | 75.0 | 4.0 |" in text
    assert "3 positives (left, green) and 4 backgrounds" in text
    assert "| exconb | 66.0 | 66.0 | 75.0 | 75.0 |" in text


def test_level_branches_are_called_level(tmp_path):
    branches = {"supcon": rows("supcon", [70.0]), "excon": rows("excon", [70.0], [0.5])}
    assert "excon ends level with SupCon" in report(tmp_path, branches)


@pytest.mark.slow
def test_curves_figure_is_written(tmp_path):
    path = plot_curves(WARMUP, BRANCHES, tmp_path / "curves.png")
    assert path.stat().st_size > 1000


def test_regime_sentence_follows_the_first_explained_epoch(tmp_path):
    # BRANCHES: 81.25 % (excon) and 75 % (exconb) of masks right in the first explained epoch.
    assert "Here 81% (excon) and 75% (exconb) of the masks were classified correctly" in report(tmp_path)
    assert "this run is in that regime" in report(tmp_path)
    # Both branches must be there: one at 45 % keeps the run out of the regime.
    mixed = {**BRANCHES, "exconb": rows("exconb", [66.0], [0.45])}
    assert "not yet in that regime" in report(tmp_path, mixed)
    weak = {"supcon": rows("supcon", [30.0]), "excon": rows("excon", [29.0], [0.11]),
            "exconb": rows("exconb", [25.0], [0.126])}
    text = report(tmp_path, weak)
    assert "11% (excon) and 13% (exconb) of the masks" in text and "not yet in that regime" in text


def test_departures_from_the_paper_are_named(tmp_path):
    # The paper's recipe (SETTINGS: no options) has no departures sentence; every departed option is named.
    assert "Departures" not in report(tmp_path)
    departed = {**SETTINGS, "dataset_options": {"num_classes": 6}, "view_crop_min": 0.6, "view_colour": False,
                "explainer_layer": "encoder.layer4", "mask_fill": "blur"}
    figures = {"curves": Path("curves.png"), "masks": Path("masks.png")}
    text = write_report(tmp_path, departed, WARMUP, BRANCHES, summaries(BRANCHES), {}, figures, (3, 4),
                        90.0).read_text()
    sentence = text[text.index("Departures"):].split("\n")[0]
    for words in ("6 shape classes", "cropping 60-100 % of the image without colour jitter or grayscale",
                  "Grad-CAM at `encoder.layer4`", "replaced by a Gaussian blur"):
        assert words in sentence
    assert "<= 0.5 replaced by a Gaussian blur" in text  # the masks figure's caption follows the fill
