"""``exaug evaluate`` through :func:`exaug.cli.main` on tiny trained runs."""

from __future__ import annotations

import json

import pytest
import torch

from exaug.cli import main
from exaug.cli.options import options_by_section, parse_option


def test_evaluate_command(runs, tmp_path, capsys):
    code = main(["evaluate", "--run", str(runs["supcon_s3"]), "--metrics", "accuracy", "--samples", "8",
                 "--checkpoint", "last", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    assert f"wrote eval.json, eval.md to {tmp_path}" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["run"]["checkpoint"] == "last" and result["run"]["checkpoint_epoch"] == 2
    assert result["evaluation"]["images"] == 8 and list(result["metrics"]) == ["accuracy"]


def test_evaluate_options(runs, tmp_path):
    code = main(["evaluate", "--run", str(runs["supcon_s3"]), "--metrics", "calibration", "--samples", "8",
                 "--option", "calibration.corruptions=contrast", "--option", "calibration.severity=5",
                 "--option", "calibration.n_bins=5", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["settings"]["calibration"] == {"n_bins": 5, "fgsm_eps": 4 / 255, "corruptions": ["contrast"],
                                                 "severity": 5}
    assert list(result["metrics"]["calibration"]["corruptions"]) == ["contrast"]
    items = ["drop_increase.keep_fractions=0.3,0.45", "drop_increase.fill=blur"]
    assert options_by_section(map(parse_option, items)) == {
        "drop_increase": {"keep_fractions": (0.3, 0.45), "fill": "blur"}}


def test_evaluate_json_list_option(runs, tmp_path):
    code = main(["evaluate", "--run", str(runs["supcon_s3"]), "--metrics", "drop_increase", "--samples", "8",
                 "--option", "drop_increase.keep_fractions=[0.3,0.45]", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["settings"]["drop_increase"]["keep_fractions"] == [0.3, 0.45]
    assert len(result["metrics"]["drop_increase"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "acuracy"], "Did you mean 'accuracy'"),
        (["--explainer", "gradcamm"], "Did you mean 'gradcam'"),
        (["--split", "tset"], "split"),
        (["--option", "calibration.severty=2"], "Did you mean 'severity'"),
        (["--option", "severity=2"], "METRIC.KEY=VALUE"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nodevice"], "device"),
    ],
)
def test_evaluate_usage_errors(runs, tmp_path, capsys, argv, message):
    code = main(["evaluate", "--run", str(runs["supcon_s3"]), "--out", str(tmp_path), "--quiet", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug evaluate: error:") and message in err
    assert not (tmp_path / "eval.json").exists()


def test_evaluate_missing_run_and_checkpoint(runs, tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(runs["supcon_s3"]), "--checkpoint", str(tmp_path / "x.pt"),
                 "--out", str(tmp_path), "--quiet"]) == 1
    assert "exaug evaluate: error:" in capsys.readouterr().err
