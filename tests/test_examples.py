"""Every script in examples/ is smoke-run with small settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL_ARGS = {
    "01_drop_in_supcon.py": ["--epochs", "1", "--samples", "64", "--batch-size", "32", "--device", "cpu"],
    "02_edda.py": ["--epochs", "1", "--samples", "64", "--batch-size", "32", "--device", "cpu"],
    "03_cgc.py": ["--epochs", "1", "--samples", "64", "--batch-size", "32", "--device", "cpu"],
    "04_cocoa.py": ["--epochs", "1", "--samples", "64", "--masks", "64", "--explicands", "2"],
    "05_lightning.py": ["--epochs", "2", "--samples", "64", "--batch-size", "32", "--accelerator", "cpu"],
}
#: Examples that need an optional extra (skipped without it).
EXTRAS = {"05_lightning.py": "lightning"}


def test_every_example_has_smoke_settings():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SMALL_ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
def test_example_runs(name, tmp_path):
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name])
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *SMALL_ARGS[name]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1" in result.stdout
