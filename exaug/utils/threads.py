"""CPU threads on shared machines: how many intra-op threads, and OpenMP threads that sleep instead of spinning.

PyTorch's Linux wheels bundle GNU OpenMP (``torch/lib/libgomp.so.1``). At the end of every parallel region
libgomp's idle threads *spin* (busy-wait, about 300,000 iterations by default) before sleeping. On an idle
machine that saves a wake-up; when other processes use the cores, the spinning threads steal the CPU time the
working threads need, and a training loop of many small operations slows down by an order of magnitude (issue
#13: ``exaug demo`` 1,389 s with other jobs on the 2 cores, 160-200 s idle). ``OMP_WAIT_POLICY=PASSIVE`` sets
the spin count to zero: idle threads sleep at once. Measured on the shared 2-core machine (two processes, each
a loop of 2-thread conv + matmul steps): 145-148 s concurrently with the default policy, 1.4 s with ``PASSIVE``
(one process alone: 18.2 s and 3.1 s; the other engineers' jobs were running too).

libgomp reads the variable once, when it is loaded, i.e. when ``torch`` is imported; it has no API to change it
later. ``import exaug`` does not import torch, so the ``exaug`` command exports the variable (when the user has
not set it) before anything loads torch; only when torch was loaded first does it re-execute itself once with the
variable set (:func:`reexec_command`). Setting ``OMP_WAIT_POLICY`` yourself (any value) skips both. Python users
set it in the environment before importing torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

# torch (and the checks, which import it) are imported inside the functions that need them: the ``exaug`` command
# imports this module to set the OpenMP environment *before* torch loads (see :mod:`exaug.cli`).

__all__ = [
    "DEFAULT_MAX_THREADS",
    "OPENMP_ENV",
    "REEXEC_MARK",
    "available_cores",
    "default_threads",
    "openmp_env",
    "reexec_command",
    "resolve_threads",
    "set_threads",
]

#: The default thread count never exceeds this: beyond it small CPU models gain little and share worse.
DEFAULT_MAX_THREADS = 4
#: Variables the ``exaug`` command sets for OpenMP when the user has not (see the module docstring).
OPENMP_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Set in the environment of a re-executed ``exaug`` so it never re-executes twice.
REEXEC_MARK = "EXAUG_OPENMP_REEXEC"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` restrict)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1  # pragma: no cover - macOS / Windows


def default_threads(cores: int | None = None) -> int:
    """``min(cores, DEFAULT_MAX_THREADS)``: how many cores other processes use is unknowable in advance.

    Example:
        >>> default_threads(2), default_threads(64)
        (2, 4)
    """
    if cores is None:
        return min(available_cores(), DEFAULT_MAX_THREADS)
    from .checks import positive_int

    return min(positive_int("cores", cores), DEFAULT_MAX_THREADS)


def resolve_threads(requested: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The intra-op thread count to set: ``requested``, else ``None`` when the user exported ``OMP_NUM_THREADS``
    (torch already follows it), else :func:`default_threads`.

    Example:
        >>> resolve_threads(3, {}), resolve_threads(None, {"OMP_NUM_THREADS": "1"})
        (3, None)
    """
    if requested is not None:
        from .checks import positive_int

        return positive_int("threads", requested)
    environ = os.environ if environ is None else environ
    return None if environ.get("OMP_NUM_THREADS") else default_threads()


def openmp_env(threads: int | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OpenMP variables to add to ``environ`` before torch is imported; those the user set are kept.

    Args:
        threads: the thread count, already validated (:func:`resolve_threads`), also exported as
            ``OMP_NUM_THREADS`` (when not set), so libgomp sizes its pool once and child processes inherit it;
            ``None``: not exported.
        environ: the environment (default: ``os.environ``).

    Returns:
        Only the missing variables (empty when nothing needs setting).

    Example:
        >>> openmp_env(2, {})
        {'OMP_WAIT_POLICY': 'PASSIVE', 'OMP_NUM_THREADS': '2'}
        >>> openmp_env(2, {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"})
        {}
    """
    environ = os.environ if environ is None else environ
    wanted = dict(OPENMP_ENV)
    if threads is not None:
        wanted["OMP_NUM_THREADS"] = str(int(threads))
    return {key: value for key, value in wanted.items() if key not in environ}


def reexec_command(args: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` to re-execute ``exaug args`` in a fresh interpreter with ``env``.

    The child runs the ``exaug`` package this process imported (its folder first on ``sys.path``, not whatever
    the working directory holds) with the same unbuffered flag, and carries :data:`REEXEC_MARK`.

    Example:
        >>> argv, env = reexec_command(["demo"], {"OMP_WAIT_POLICY": "PASSIVE"})
        >>> argv[-1], env["OMP_WAIT_POLICY"], REEXEC_MARK in env
        ('demo', 'PASSIVE', True)
    """
    environ = os.environ if environ is None else environ
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds the exaug package
    code = f"import sys; sys.path.insert(0, {root!r}); from exaug.cli import main; sys.exit(main())"
    # ``python -u`` (torchrun's default) leaves no flag behind, only write-through standard streams.
    flags = ["-u"] if getattr(sys.stdout, "write_through", False) else []
    return [sys.executable, *flags, "-c", code, *args], {**environ, REEXEC_MARK: "1"}


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None``: leave them) and return the number in use.

    Example:
        >>> before = set_threads(None)
        >>> set_threads(1)
        1
        >>> _ = set_threads(before)
    """
    import torch

    from .checks import positive_int

    if threads is not None:
        torch.set_num_threads(positive_int("threads", threads))
    return torch.get_num_threads()
