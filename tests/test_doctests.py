"""Every docstring example in the package runs: the examples users copy are tested like code."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import exaug

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(exaug.__path__, prefix="exaug.")
    if not info.name.endswith("__main__")  # running it would start the CLI
)

#: Modules that need an optional extra: skipped without it.
EXTRAS = {"exaug.integrations.lightning": "lightning"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name])
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # globals: a copy of the module namespace, as pytest does
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_every_subpackage_is_collected():
    for package in ("explainers", "augment", "losses", "training", "metrics", "evaluation", "cli", "data"):
        assert any(m.startswith(f"exaug.{package}.") for m in MODULES), package
