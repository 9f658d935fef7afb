"""One name -> object table behind every registry of exaug (explainers, training methods, evaluation tasks).

timm's habit: a name is a constructor, ``list_*("pattern")`` filters with shell wildcards, ``is_*`` never raises,
and an unknown name is an error that lists the valid names and suggests the closest one. Each registry module keeps
its own public functions (``register_explainer``, ``list_methods``, ...) with their own checks of what may be
registered; this class only holds the table, so the lookup rules and messages are the same everywhere.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, Iterator, Sequence, TypeVar

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: object, valid: Sequence[str], cutoff: float = 0.6) -> str:
    """``" Did you mean 'x'?"`` for the entry of ``valid`` closest to ``name``, or ``""`` when none is close.

    Example:
        >>> did_you_mean("gradcamm", ["gradcam", "random"])
        " Did you mean 'gradcam'?"
        >>> did_you_mean("zzz", ["gradcam", "random"])
        ''
    """
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Named entries with one-line descriptions, kept in registration order.

    Example:
        >>> reg = Registry("widget", valid_label="widgets")
        >>> reg.add("round", object(), "a round widget")
        >>> reg.add("square", object(), "a square widget")
        >>> reg.names("r*"), "square" in reg
        (['round'], True)
        >>> reg.get("sqare")
        Traceback (most recent call last):
        ...
        ValueError: unknown widget 'sqare'. Did you mean 'square'? Valid widgets: round, square

    Args:
        kind: what an entry is, for messages (``"explainer"``, ``"method"``, ``"metric"``).
        valid_label: the word before the list of valid names in the unknown-name error (``"names"``).
        sort: list names sorted (explainers) instead of in registration order (methods, report order of tasks).
        cutoff: similarity cutoff of the suggestion (:func:`difflib.get_close_matches`).
        extra_valid: words that are valid besides the entries (shown first in the list, e.g. ``"all"``).
    """

    def __init__(
        self,
        kind: str,
        *,
        valid_label: str = "names",
        sort: bool = False,
        cutoff: float = 0.6,
        extra_valid: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.valid_label = valid_label
        self.sort = sort
        self.cutoff = cutoff
        self.extra_valid = tuple(extra_valid)
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def add(self, name: str, entry: T, description: str) -> None:
        """Register ``entry`` as ``name``; registering the same object again is a no-op.

        Raises:
            ValueError: ``name`` already holds another entry.
        """
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"a{'n' if self.kind[0] in 'aeiou' else ''} {self.kind} named {name!r} is already "
                             "registered")
        self._entries[name] = entry
        self._descriptions[name] = description

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return its entry (unknown names raise the helpful error)."""
        entry = self.get(name)
        del self._entries[name], self._descriptions[name]
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ValueError: unknown name; the message lists the valid names and the closest match.
        """
        if not self.__contains__(name):
            valid = self.names()
            listed = ", ".join([*self.extra_valid, *valid])
            raise ValueError(f"unknown {self.kind} {name!r}.{did_you_mean(name, valid, self.cutoff)} "
                             f"Valid {self.valid_label}: {listed}")
        return self._entries[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, optionally filtered by a case-sensitive :mod:`fnmatch` ``pattern`` (``"pgc.*"``)."""
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a string or None, got {type(pattern).__name__}")
        names = sorted(self._entries) if self.sort else list(self._entries)
        # fnmatchcase, not fnmatch.filter: registry names are case-sensitive on every platform.
        return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def describe(self) -> dict[str, str]:
        """``{name: one-line description}`` in listing order."""
        return {name: self._descriptions[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
