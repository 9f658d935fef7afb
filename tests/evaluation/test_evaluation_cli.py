"""``exaug evaluate`` / ``exaug compare`` through their parser functions on a fresh argparse parser."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from exaug.evaluation.cli import add_compare_parser, add_evaluate_parser, add_parser, parse_options


def main(argv: list[str]) -> int:
    """What ``exaug.cli.main`` does with the subcommands mounted."""
    parser = argparse.ArgumentParser(prog="exaug")
    sub = parser.add_subparsers(dest="command")
    add_evaluate_parser(sub)
    add_compare_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


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
    assert parse_options(["drop_increase.keep_fractions=0.3,0.45", "drop_increase.fill=blur"]) == {
        "drop_increase": {"keep_fractions": (0.3, 0.45), "fill": "blur"}}


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


def test_compare_command(evaluated_runs, tmp_path, capsys):
    folders = [str(evaluated_runs[k]) for k in ("exconb_s3", "exconb_s4", "supcon_s3")]
    assert main(["compare", *folders, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Comparison of 3 runs") and "| exconb | 2 (seeds 3, 4) |" in out
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.json").is_file()
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "not an exaug run folder" in capsys.readouterr().err


def test_add_parser_registers_both():
    parser = argparse.ArgumentParser(prog="exaug")
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["compare", "a", "b"]).runs == ["a", "b"]
    assert parser.parse_args(["evaluate", "--run", "r"]).metrics == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate"])  # --run is required
