"""The evaluation-task interface: one metric of ``evaluate_run``, fed every batch of the evaluated split.

A task declares, as class attributes, what :func:`~exaug.evaluation.evaluate_run` must know before the pass:

* ``options``: its settings and their defaults (the ``options={name: {...}}`` / ``--option name.key=value``
  section of that name; ``None`` may mean "as the run was trained", resolved in ``__init__``);
* ``requires``: what it needs beyond the model, from :data:`REQUIREMENTS`: ``"explainer"`` (an explainer is
  built and :attr:`EvalContext.explainer` / :attr:`EvalContext.augment` are set), ``"object_masks"`` (the task is
  skipped, with a note, on a dataset without object masks or boxes);
* ``measures_explanations``: it scores the explanations (the report's "Explanation quality" section).

Per instance, :meth:`EvaluationTask.update` folds a batch in, :meth:`EvaluationTask.finish` returns the
JSON-ready numbers, :meth:`EvaluationTask.figures` writes figures. Shared per-batch work (clean logits, FGSM
logits, encoder embeddings) lives on :class:`~exaug.evaluation.context.EvalBatch` and is computed once.

Adding a task is one module with a registered class (see :func:`~exaug.evaluation.tasks.register_task`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..context import EvalBatch, EvalContext
from ..output import md_table

__all__ = ["REQUIREMENTS", "EvaluationTask", "as_tuple"]

#: What a task may require (``EvaluationTask.requires``).
REQUIREMENTS: tuple[str, ...] = ("explainer", "object_masks")


def as_tuple(value: Any) -> tuple[Any, ...]:
    """A list option given as one value, a sequence or a comma-separated string (``--option``) -> a tuple.

    Example:
        >>> as_tuple("0.3, 0.45"), as_tuple([1, 5]), as_tuple(0.3)
        (('0.3', '0.45'), (1, 5), (0.3,))
    """
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


class EvaluationTask(abc.ABC):
    """One selected metric of an evaluation.

    Args:
        ctx: the evaluation context (run, networks, explainer, dataset, seed, ...).
        settings: this task's options (its defaults updated with the user's); the task may resolve them further
            (e.g. ``None`` -> the run's value). They are written to ``eval.json`` as they are after ``__init__``.

    Attributes:
        seconds: time spent in this task (``update`` and ``finish``), for ``eval.json``'s timing.
    """

    #: Registry name, set by :func:`~exaug.evaluation.tasks.register_task`.
    name: ClassVar[str] = ""
    #: One line for listings.
    description: ClassVar[str] = ""
    #: Options and their defaults.
    options: ClassVar[Mapping[str, Any]] = {}
    #: Subset of :data:`REQUIREMENTS`.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Scores explanations (reported under "Explanation quality").
    measures_explanations: ClassVar[bool] = False

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        self.ctx = ctx
        self.settings = settings
        self.seconds = 0.0

    @abc.abstractmethod
    def update(self, batch: EvalBatch) -> None:
        """Fold one batch into the metric."""

    @abc.abstractmethod
    def finish(self) -> dict[str, Any]:
        """The numbers for ``eval.json`` (Python scalars, lists and dicts). A ``ValueError`` means "not
        computable on this data" and becomes a note; the other tasks keep going."""

    def figures(self, out: Path) -> dict[str, str]:
        """Write this task's figures into ``out`` (after :meth:`finish`); returns ``{figure name: file name}``."""
        return {}

    @classmethod
    def markdown(cls, result: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
        """Lines of ``eval.md`` for this task's ``result`` (from ``eval.json``): by default a heading and a table
        of its scalar values. The built-in tasks are laid out by :func:`~exaug.evaluation.report.render_eval_markdown`.
        """
        rows = [[key, f"{value:.4g}" if isinstance(value, float) else str(value)]
                for key, value in result.items() if isinstance(value, (int, float, str, bool))]
        intro = [cls.description, ""] if cls.description else []
        return [f"## {cls.name}", "", *intro, *md_table(["value", "result"], rows), ""]
