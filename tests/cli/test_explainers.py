"""``exaug explainers``: one line per registered backend."""

from __future__ import annotations

import pytest

import exaug
from exaug.cli import main


def test_explainers_lists_every_backend_with_a_description(capsys):
    assert main(["explainers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == exaug.list_explainers() and len(names) >= 12
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_explainers_by_name(capsys):
    assert main(["explainers", "rise", "gradcam"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    described = exaug.describe_explainers()
    assert [line.split(None, 1) for line in lines] == [["rise", described["rise"]], ["gradcam", described["gradcam"]]]


def test_unknown_explainer_suggests_the_closest(capsys):
    assert main(["explainers", "gradcamm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug explainers: error: unknown explainer 'gradcamm'. Did you mean 'gradcam'?")
    with pytest.raises(ValueError, match="gradcamm"):
        main(["--debug", "explainers", "gradcamm"])
