"""Evaluate trained runs (``exaug evaluate``) and compare them side by side (``exaug compare``).

See ``docs/evaluation.md``.
"""

from __future__ import annotations

from .compare import compare_runs
from .evaluate import METRICS, evaluate_run

__all__ = ["METRICS", "compare_runs", "evaluate_run"]
