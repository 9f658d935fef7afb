"""Evaluate trained runs (``exaug evaluate``) and compare them side by side (``exaug compare``).

Every metric of :func:`evaluate_run` is a registered task (:mod:`exaug.evaluation.tasks`); ``METRICS`` lists
them, read from the registry at each access. See ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Any

from . import evaluate as _evaluate_module
from .compare import compare_runs
from .context import EvalBatch, EvalContext
from .evaluate import evaluate_run, resolve_metrics, resolve_options
from .report import render_eval_markdown
from .tasks import EvaluationTask, describe_tasks, get_task, list_tasks, register_task, unregister_task

__all__ = [
    "METRICS",
    "EvalBatch",
    "EvalContext",
    "EvaluationTask",
    "compare_runs",
    "describe_tasks",
    "evaluate_run",
    "get_task",
    "list_tasks",
    "register_task",
    "render_eval_markdown",
    "resolve_metrics",
    "resolve_options",
    "unregister_task",
]


def __getattr__(name: str) -> Any:
    if name in ("METRICS", "EXPLANATION_METRICS", "DEFAULT_OPTIONS"):  # live views of the task registry
        return getattr(_evaluate_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
