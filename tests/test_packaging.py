"""Packaging metadata: one version source, py.typed shipped, citation and changelog present and well formed."""

from __future__ import annotations

import re

from pathlib import Path

import pytest
import yaml

import exaug

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def test_version_has_one_source():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "exaug.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", exaug.__version__)
    assert "version" not in yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_py_typed_ships_and_extras_are_declared():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (ROOT / "exaug" / "py.typed").is_file()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["exaug"]
    extras = pyproject["project"]["optional-dependencies"]
    assert {"timm", "lightning", "wandb", "hf", "tsne", "docs", "cluster", "test", "all"} <= set(extras)
    runtime = {name for name in extras if name not in ("docs", "test", "all")}
    assert extras["all"] == [f"exaug[{','.join(sorted(runtime, key=list(extras).index))}]"]


def test_citation_cites_the_implemented_papers():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["authors"]
    titles = " | ".join(ref["title"] for ref in cff["references"])
    for paper in ("ExCon", "Consistent Explanations by Contrastive Learning",
                  "Contrastive Corpus Attribution", "EDDA"):
        assert paper in titles
    assert all(ref["authors"] for ref in cff["references"])


def test_changelog_has_an_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text and "keepachangelog.com" in text
