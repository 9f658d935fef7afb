"""Atomic checkpoint files: a crash or Ctrl-C while writing never leaves a truncated ``last.pt``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_save", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not an exaug checkpoint."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` onto ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so readers see either the old or the new file, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, *, required_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint on the CPU with a clear error for missing or corrupt files.

    Args:
        path: the ``.pt`` file.
        required_keys: keys the checkpoint must contain.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a dict")
    missing = [k for k in required_keys if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}: not an exaug training checkpoint?")
    return state
