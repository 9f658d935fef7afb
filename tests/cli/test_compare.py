"""``exaug compare`` through :func:`exaug.cli.main` on tiny evaluated runs."""

from __future__ import annotations

import pytest

from exaug.cli import build_parser, main


def test_compare_command(evaluated_runs, tmp_path, capsys):
    folders = [str(evaluated_runs[k]) for k in ("exconb_s3", "exconb_s4", "supcon_s3")]
    assert main(["compare", *folders, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Comparison of 3 runs") and "| exconb | 2 (seeds 3, 4) |" in out
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.json").is_file()
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "not an exaug run folder" in capsys.readouterr().err


def test_parser_registers_compare_and_evaluate():
    parser = build_parser()
    assert parser.parse_args(["compare", "a", "b"]).runs == ["a", "b"]
    assert parser.parse_args(["evaluate", "--run", "r"]).metrics == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate"])  # --run is required
