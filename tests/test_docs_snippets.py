"""Every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs, so no page can rot.

Python blocks run in one subprocess (exaug is imported once), each in a fresh namespace and a fresh temporary
folder, with the repository on ``PYTHONPATH``. Bash blocks run with ``bash -e`` in a fresh temporary folder, with
``exaug`` and ``python`` on ``PATH`` pointing at this interpreter and this checkout. The markers a page uses to
name, chain, shrink or skip a block are described in ``tests/docs/snippets.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_helper():
    # By file path: the repository's docs/ folder would shadow a ``docs`` package on sys.path.
    spec = importlib.util.spec_from_file_location("exaug_doc_snippets", ROOT / "tests" / "docs" / "snippets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


_snippets = _load_helper()
LANGUAGES, Snippet, bash_source, extract, python_source = (
    _snippets.LANGUAGES, _snippets.Snippet, _snippets.bash_source, _snippets.extract, _snippets.python_source)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPETS = {page: extract(page) for page in PAGES}
ALL = [s for page in PAGES for s in SNIPPETS[page]]
INCLUDE = "--8<--"

# Blocks another branch rewrites at the same time; each entry names where it is already tested. Remove at merge.
PENDING: dict[tuple[str, str], str] = {}


def heading_of(snippet: Snippet) -> str:
    lines = snippet.page.read_text(encoding="utf-8").splitlines()[: snippet.line - 1]
    return next((line.lstrip("#").strip() for line in reversed(lines) if line.startswith("#")), "")


def is_include(snippet: Snippet) -> bool:
    return all(line.startswith(INCLUDE) for line in snippet.code.strip().splitlines())


def skip_reason(snippet: Snippet) -> str | None:
    if snippet.skip:
        return snippet.skip
    if is_include(snippet):
        return "includes a script of examples/ (smoke-run by tests/test_examples.py)"
    return PENDING.get((snippet.page.name, heading_of(snippet)))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # OMP_WAIT_POLICY set here spares every `exaug` command its re-exec (exaug.utils.threads sets it otherwise).
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    return env


def params(language: str) -> list:
    return [pytest.param(s, id=s.id, marks=[pytest.mark.skip(reason=r)] if (r := skip_reason(s)) else [])
            for s in ALL if s.language == language]


def test_pages_have_snippets_and_valid_markers():
    assert {s.language for s in ALL} == set(LANGUAGES)
    for page, snippets in SNIPPETS.items():
        names = [s.name for s in snippets if s.name]
        assert len(names) == len(set(names)), f"{page.name}: duplicate snippet names"
        for s in snippets:
            assert s.after is None or s.after in names, f"{s.id}: after={s.after} names no block of the page"
            assert not (s.shrink and s.language != "bash"), f"{s.id}: shrink is for bash blocks"
            # Every replace marker must match its block (a stale one would silently test the long run).
            for old, _ in s.replace:
                assert old in s.code, f"{s.id}: replace marker {old!r} is not in the block"


def test_every_example_is_rendered_on_the_site():
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    included = {line.split('"')[1] for line in page.splitlines() if line.startswith(INCLUDE)}
    assert included == {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.py")}
    assert all((ROOT / path).is_file() for path in included)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny trained run, copied wherever a block declares ``run=PATH``."""
    out = tmp_path_factory.mktemp("shared-run") / "run"
    proc = subprocess.run([sys.executable, "-m", "exaug", "train", "--method", "exconb", "--dataset", "synthetic",
                           "--model", "resnet18", "--width", "0.125", "--epochs", "1", "--batch-size", "32",
                           "--train-samples", "64", "--eval-samples", "32", "--exp-start-epoch", "0",
                           "--device", "cpu", "--out", str(out)], env=child_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def place_runs(snippet: Snippet, cwd: Path, run: Path) -> None:
    for path in snippet.runs:
        shutil.copytree(run, cwd / path)


@pytest.fixture(scope="session")
def python_results(tmp_path_factory, trained_run) -> dict[str, str | None]:
    """Run every python block that is not skipped, once, in one subprocess."""
    base = tmp_path_factory.mktemp("python-snippets")
    jobs = []
    for s in ALL:
        if s.language == "python" and not skip_reason(s):
            cwd = base / s.id.replace(":", "_")
            cwd.mkdir()
            place_runs(s, cwd, trained_run)
            jobs.append({"id": s.id, "code": python_source(s, SNIPPETS[s.page]), "cwd": str(cwd)})
    (base / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    results_path = base / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "docs" / "run_python_snippets.py"),
                           str(base / "jobs.json"), str(results_path)], cwd=base, env=child_env(),
                          capture_output=True, text=True, timeout=900)
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    crash = f"the snippet runner died (exit {proc.returncode}): {proc.stderr[-3000:]}"
    return {job["id"]: results.get(job["id"], crash) for job in jobs}


@pytest.mark.parametrize("snippet", params("python"))
def test_python_snippet_runs(snippet, python_results):
    error = python_results[snippet.id]
    assert error is None, f"{snippet.id} failed:\n{error}"


@pytest.fixture(scope="session")
def bash_runner(tmp_path_factory, trained_run):
    """Runs a bash block once (memoised), in its own folder or in the folder of the block it continues."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, command in (("exaug", f'"{sys.executable}" -m exaug'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n', encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    env = child_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def run(snippet: Snippet) -> tuple[Path, subprocess.CompletedProcess]:
        if snippet.id not in done:
            if snippet.after:
                named = {s.name: s for s in SNIPPETS[snippet.page] if s.name}
                cwd, before = run(named[snippet.after])
                assert before.returncode == 0, f"{snippet.id}: the block it continues failed"
            else:
                cwd = tmp_path_factory.mktemp("bash-" + snippet.id.replace(":", "_"))
            place_runs(snippet, cwd, trained_run)
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", bash_source(snippet)], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            done[snippet.id] = (cwd, proc)
        return done[snippet.id]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("snippet", params("bash"))
def test_bash_snippet_runs(snippet, bash_runner):
    _, proc = bash_runner(snippet)
    assert proc.returncode == 0, f"{snippet.id} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
