"""Name -> training method registry (``register_method`` / ``create_method`` / ``list_methods``).

Like the explainer registry: a :class:`~exaug.training.methods.TrainingMethod` subclass registers itself under
a name with a one-line description; :class:`~exaug.training.TrainConfig` validates ``method`` against the
registry, ``exaug train --help`` lists :func:`describe_methods`, and the trainer builds the method with
:func:`create_method`. Names keep their registration order (the built-in methods: ``ce``, ``supcon``,
``supcon_ori``, ``excon``, ``exconb``, ``edda``, ``cgc``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from ...utils.registry import Registry, did_you_mean

if TYPE_CHECKING:  # only for annotations: base.py imports this module
    from .base import TrainingMethod

__all__ = ["METHODS", "MethodNames", "closest_hint", "create_method", "describe_methods", "get_method",
           "is_method", "list_methods", "register_method", "unregister_method"]

_REGISTRY: Registry[type["TrainingMethod"]] = Registry("method", valid_label="methods")

M = TypeVar("M", bound=type)


def closest_hint(name: str, valid: Sequence[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``valid`` to ``name``, or ``""`` when none is close."""
    return did_you_mean(name, valid)


def register_method(name: str, description: str) -> Callable[[M], M]:
    """Class decorator that registers a :class:`~exaug.training.methods.TrainingMethod` subclass as ``name``.

    Sets the class attributes ``name`` and ``description``.

    Args:
        name: the ``--method`` value (non-empty, unique, no spaces).
        description: one line for ``exaug train --help``.

    Raises:
        ValueError: empty or already registered ``name`` (to another class), or an empty description.
        TypeError: the decorated object is not a ``TrainingMethod`` subclass.
    """
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise ValueError(f"method name must be a non-empty string without spaces, got {name!r}")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"method {name!r} needs a one-line description")

    def decorator(cls: M) -> M:
        from .base import TrainingMethod  # deferred: base.py imports this module

        if not (isinstance(cls, type) and issubclass(cls, TrainingMethod)):
            raise TypeError(f"register_method({name!r}) decorates TrainingMethod subclasses, got {cls!r}")
        _REGISTRY.add(name, cls, description)  # refuses a name taken by another class before the class is touched
        cls.name, cls.description = name, description
        return cls

    return decorator


def unregister_method(name: str) -> None:
    """Remove ``name`` from the registry (plugins and tests that register temporary methods)."""
    _REGISTRY.remove(name)


def list_methods(pattern: str | None = None) -> list[str]:
    """Registered method names in registration order, optionally filtered by a shell ``pattern`` (``"sup*"``)."""
    return _REGISTRY.names(pattern)


def is_method(name: str) -> bool:
    """Whether ``name`` is a registered method."""
    return name in _REGISTRY


def get_method(name: str) -> type["TrainingMethod"]:
    """The class registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names and the closest match.
    """
    return _REGISTRY.get(name)


def create_method(name: str, trainer: Any) -> "TrainingMethod":
    """Instantiate the method ``name`` for ``trainer`` (a :class:`~exaug.training.Trainer`)."""
    return get_method(name)(trainer)


def describe_methods() -> dict[str, str]:
    """``{name: one-line description}`` of every registered method (for ``exaug train --help``)."""
    return _REGISTRY.describe()


class MethodNames(Sequence[str]):
    """A read-only, always current tuple-like view of the registered names (``METHODS``).

    Iterating, indexing, ``len``, ``in`` and ``==`` with a tuple or list all see the registry as it is now, so
    a method registered by a plugin appears without re-importing anything.
    """

    def __getitem__(self, index: Any) -> Any:
        return tuple(_REGISTRY.names())[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY.names())

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (MethodNames, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable view

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


#: Registered training method names (a live view of the registry; see :func:`list_methods`).
METHODS = MethodNames()
