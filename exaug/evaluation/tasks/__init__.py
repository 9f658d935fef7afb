"""Evaluation tasks as plugins: every metric of :func:`~exaug.evaluation.evaluate_run` is a registered
:class:`EvaluationTask` (see :mod:`exaug.evaluation.tasks.base` for the interface).

The built-in tasks register on import, in report order: ``accuracy``, ``drop_increase``, ``infidelity``,
``insertion_deletion``, ``content_heatmap``, ``calibration``, ``adversarial``, ``tsne``, ``localisation``,
``randomisation``. A new task is one module
with an ``@register_task("name")`` class, imported before :func:`~exaug.evaluation.evaluate_run` runs.
"""

from __future__ import annotations

from .base import REQUIREMENTS, EvaluationTask, as_tuple
from .registry import describe_tasks, get_task, list_tasks, register_task, unregister_task

# Built-in tasks, imported for their registration; the order of these imports is the report order.
from . import accuracy  # noqa: E402,F401  isort: skip
from . import explanation  # noqa: E402,F401  isort: skip
from . import robustness  # noqa: E402,F401  isort: skip
from . import masked_views  # noqa: E402,F401  isort: skip
from . import localisation  # noqa: E402,F401  isort: skip
from . import randomisation  # noqa: E402,F401  isort: skip

__all__ = [
    "REQUIREMENTS",
    "EvaluationTask",
    "as_tuple",
    "describe_tasks",
    "get_task",
    "list_tasks",
    "register_task",
    "unregister_task",
]
