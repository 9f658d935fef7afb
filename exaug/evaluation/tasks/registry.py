"""Name -> evaluation task registry (timm's ``register_model`` / ``list_models`` habit).

The registration order is the report order: :data:`~exaug.evaluation.METRICS` and ``--metrics all`` list the
tasks in it, built-in ones first.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from ...utils.registry import Registry, did_you_mean
from .base import REQUIREMENTS, EvaluationTask

__all__ = ["describe_tasks", "get_task", "list_tasks", "register_task", "suggest", "unregister_task"]

_TASKS: Registry[type[EvaluationTask]] = Registry("metric", valid_label="metrics", cutoff=0.5, extra_valid=("all",))
#: Names that cannot be tasks: ``all`` selects every task, ``grid`` is the saliency-grid options section.
RESERVED: tuple[str, ...] = ("all", "grid")

T = TypeVar("T", bound=type[EvaluationTask])


def suggest(name: str, valid: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``valid`` (empty when none is close)."""
    return did_you_mean(name, valid, cutoff=0.5)


def register_task(name: str, description: str | None = None) -> Callable[[T], T]:
    """Class decorator: register an :class:`~exaug.evaluation.tasks.EvaluationTask` subclass as ``name``.

    Example:
        >>> from exaug.evaluation.tasks import EvaluationTask, list_tasks, unregister_task
        >>> @register_task("mean_logit_doc", "mean of the clean logits")
        ... class MeanLogit(EvaluationTask):
        ...     total, count = 0.0, 0
        ...     def update(self, batch):
        ...         self.total += float(batch.logits.sum())
        ...         self.count += batch.logits.numel()
        ...     def finish(self):
        ...         return {"mean": self.total / self.count}
        >>> list_tasks("mean_*")
        ['mean_logit_doc']
        >>> unregister_task("mean_logit_doc")

    Args:
        name: the metric name (``--metrics``, the ``options`` section, the key in ``eval.json``).
        description: one line; default: the class's ``description`` or the first line of its docstring.

    Raises:
        ValueError: a name that is taken, reserved or not an identifier; an unknown requirement.
        TypeError: the class is not an ``EvaluationTask``.
    """
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
        raise ValueError(f"task name must be an identifier other than {RESERVED}, got {name!r}")

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, EvaluationTask)):
            raise TypeError(f"register_task({name!r}) decorates an EvaluationTask subclass, got {cls!r}")
        unknown = set(cls.requires) - set(REQUIREMENTS)
        if unknown:
            raise ValueError(f"task {name!r} requires unknown {sorted(unknown)}; valid: {', '.join(REQUIREMENTS)}")
        text = description or cls.description or (cls.__doc__ or "").strip().split("\n")[0]
        _TASKS.add(name, cls, text)  # refuses a name taken by another class before the class is touched
        cls.name, cls.description = name, text
        return cls

    return decorator


def unregister_task(name: str) -> None:
    """Remove the task registered as ``name`` (e.g. a plugin registered for one script or test)."""
    _TASKS.remove(name)


def list_tasks(pattern: str | None = None) -> list[str]:
    """Registered task names in report order, optionally filtered by an ``fnmatch`` ``pattern`` (``"*_auc"``)."""
    return _TASKS.names(pattern)


def describe_tasks() -> dict[str, str]:
    """``{name: one-line description}`` in report order."""
    return _TASKS.describe()


def get_task(name: str) -> type[EvaluationTask]:
    """The task class registered as ``name``.

    Raises:
        ValueError: unknown name (with the closest registered one and the valid names).
    """
    return _TASKS.get(name)
