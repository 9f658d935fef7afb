"""How a failed ``exaug`` command is reported: one line on stderr and an exit code, never a traceback.

:func:`exaug.cli.main` is the one place that turns an exception into ``exaug <cmd>: error: ...``; this module
holds what it and the commands share: the table of exception types and exit codes, and :class:`UsageError`
with :func:`usage_errors` for the few errors whose type alone would give the wrong code (a ``RuntimeError`` of
``torch.device("cuda")`` is a wrong ``--device``, not a failed run).

Exit codes:
    0: success.
    1: the run failed: ``RuntimeError`` (``CheckpointError`` for a corrupt checkpoint, ``TrainingDiverged``, ...)
       or an ``OSError`` other than a missing path (``FileExistsError``, ``PermissionError``, a full disk).
    2: bad usage: ``ValueError`` (bad value, unknown name, corrupt config file), ``TypeError`` (unknown option),
       ``LookupError`` (index out of range), ``FileNotFoundError`` / ``NotADirectoryError`` / ``IsADirectoryError``
       (bad path), and argparse's own errors.
    130: interrupted (Ctrl-C).
    Anything else (``AttributeError``, ``AssertionError``, ...) is a bug in exaug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["EXIT_CODES", "UsageError", "error_line", "exit_code", "usage_errors"]


class UsageError(ValueError):
    """An argument is wrong (exit code 2). The message names the argument."""


#: ``(exception types, exit code)``, first match wins: the missing-path ``OSError`` subclasses come before
#: ``OSError``.
EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
    ((ValueError, TypeError, LookupError, FileNotFoundError, NotADirectoryError, IsADirectoryError), 2),
    ((RuntimeError, OSError), 1),
)


def exit_code(err: BaseException) -> int | None:
    """The exit code of a command that raised ``err``; ``None`` for a bug (the traceback is kept).

    Example:
        >>> from exaug.cli.errors import exit_code
        >>> exit_code(FileNotFoundError("x")), exit_code(PermissionError("x")), exit_code(AttributeError("x"))
        (2, 1, None)
    """
    for types, code in EXIT_CODES:
        if isinstance(err, types):
            return code
    return None


def error_line(command: str, err: BaseException) -> str:
    """``exaug <command>: error: <message>`` on one line (a ``KeyError`` loses its quotes, newlines become spaces).

    Example:
        >>> from exaug.cli.errors import error_line
        >>> error_line("explain", KeyError("unknown name 'x'"))
        "exaug explain: error: unknown name 'x'"
    """
    args = getattr(err, "args", ())
    text = args[0] if isinstance(err, KeyError) and len(args) == 1 and isinstance(args[0], str) else str(err)
    text = " ".join(text.split()) or type(err).__name__
    return f"exaug {command}: error: {text}"


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Re-raise every reportable error of the block as a :class:`UsageError` (exit code 2).

    For code that only interprets arguments (building a config, resolving ``--device``), where even a
    ``RuntimeError`` or a corrupt ``--resume`` checkpoint means the arguments are wrong.
    """
    try:
        yield
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - filtered by exit_code: bugs keep their own type and traceback
        if exit_code(err) is None:
            raise
        raise UsageError(str(err)) from err
