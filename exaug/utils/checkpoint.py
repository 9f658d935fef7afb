"""Checkpoint files: atomic writes, safe loading, clear errors.

* :func:`atomic_save` never leaves a truncated file: a crash, Ctrl-C or a full disk while writing keeps the
  previous checkpoint, and the error names the path.
* :func:`load_checkpoint` loads with ``torch.load(..., weights_only=True)``: tensors, plain containers, numbers
  and strings only, so a crafted file cannot run code. A file that needs arbitrary Python objects (a legacy
  checkpoint, or a malicious one) is refused unless the caller opts in with ``trust=True`` (``--trust-checkpoint``
  on the command line) or inside :func:`trusted_checkpoints`.
* :func:`remove_stale_temporaries` deletes the temporary files of writes that a kill interrupted.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["TRUST_HINT", "CheckpointError", "atomic_save", "load_checkpoint", "remove_stale_temporaries",
           "trusted_checkpoints"]

#: How to opt in to unsafe loading; quoted by every refusal.
TRUST_HINT = "--trust-checkpoint on the command line, trust=True in load_run / load_checkpoint"

_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("exaug_trusted_checkpoints", default=False)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, unsafe, not an exaug checkpoint, or cannot be written."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so readers see either the old or the new file, never half.

    Raises:
        CheckpointError: writing failed (disk full, read-only folder, ...); the message names ``path`` and the
            reason, the temporary file is removed and the previous ``path`` is untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            reason = os.strerror(err.errno) if err.errno else _short(err)
        elif isinstance(err, RuntimeError) and "inline_container" in str(err):
            # torch's zip writer reports a full disk as "[enforce fail at inline_container.cc ...]".
            reason = f"writing failed, is the disk full? ({_short(err)})"
        else:
            raise
        kept = "the previous file is kept" if path.exists() else "no file was written"
        raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {reason}; {kept}") from err


def _short(err: BaseException) -> str:
    """The first line of ``err``'s message (torch errors can span many lines)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Within the block, :func:`load_checkpoint` loads files that need arbitrary Python objects (like
    ``trust=True``). For commands that load through layers that do not pass ``trust`` along.

    Only use it for files from a source you trust: unpickling them can run any code.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def load_checkpoint(
    path: str | Path, *, required_keys: tuple[str, ...] = (), trust: bool | None = None
) -> dict[str, Any]:
    """Load a checkpoint on the CPU, safely, with a clear error for missing, corrupt or unsafe files.

    Args:
        path: the ``.pt`` file.
        required_keys: keys the checkpoint must contain.
        trust: allow files that hold arbitrary Python objects (unpickling runs their code: only for files from a
            trusted source, e.g. checkpoints exaug wrote before safe loading, which held NumPy RNG states as
            objects). ``None``: only inside :func:`trusted_checkpoints`.

    Raises:
        CheckpointError: one line naming the file and what is wrong.

    Example:
        >>> import os, tempfile, torch
        >>> from exaug.utils.checkpoint import atomic_save, load_checkpoint
        >>> path = os.path.join(tempfile.mkdtemp(), "last.pt")
        >>> atomic_save({"epoch": 1, "model": {"w": torch.zeros(2)}}, path)
        >>> load_checkpoint(path, required_keys=("epoch",))["epoch"]
        1
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): a write was cut short or the copy failed")
    trust = _TRUSTED.get() if trust is None else trust
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # The safe unpickler names the first global it refuses ("GLOBAL numpy.core...", "GLOBAL posix.system");
        # any other refusal ("Unsupported operand") means bytes that are not a checkpoint at all.
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused is None:
            raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable (not a torch checkpoint: "
                                  f"{_short(err).split(' In PyTorch')[0]})") from err
        if not trust:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds Python objects ({refused.group(1)}) that safe loading refuses (a "
                f"checkpoint from an older exaug, or a crafted file: unpickling it could run code). If you trust "
                f"its source, opt in with {TRUST_HINT}"
            ) from err
        state = _load_trusted(path)
    except Exception as err:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable ({_short(err)})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a dict of states")
    missing = [k for k in required_keys if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}: not an exaug training checkpoint?")
    return state


def _load_trusted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - reported as a damaged file, like the safe path
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable ({_short(err)})") from err


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_save` calls left in ``folder``
    (``.<name>.<random>.tmp``); returns what was removed. Only call it while no other process writes there."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed
