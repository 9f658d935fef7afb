"""Where a stochastic backend's random numbers come from: a ``seed``, a ``generator``, never the caller's RNG state.

Libraries such as Captum (``NoiseTunnel``, ``GradientShap``), pytorch-grad-cam (``RandomCAM``) and scikit-learn
(``KernelPCA``'s ARPACK start vector) draw from torch's, numpy's or Python's *global* RNGs and take no generator.
:meth:`RandomSource.global_rngs` runs such a call on a fork of the global RNGs (torch's CPU generator and the
generator of the inputs' device, numpy's and Python's), seeded from the backend's own ``seed`` / ``generator``, and
restores the caller's states on exit, so an explanation never shifts the random stream of a training loop.

The three ways to drive a :class:`RandomSource`:

* ``seed=int``: every call is seeded with it, so the same images always get the same map;
* ``generator=torch.Generator``: every call draws a fresh seed from it (advancing it): a reproducible stream;
* neither: the library sees the global RNGs exactly as the caller left them (so ``torch.manual_seed`` /
  ``np.random.seed`` still make the maps reproducible), and they are restored afterwards.
"""

from __future__ import annotations

import contextlib
import numbers
import random
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["RandomSource", "check_seed", "check_generator", "seed_from_generator"]

# Seeds handed to numpy must fit in 32 bits; torch and Python take any non-negative int below 2**63.
_SEED_BOUND = 2**63 - 1


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """``seed`` as an int (or ``None``), else a ``ValueError`` naming the option (bools are rejected)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"{name} must be an int or None, got {seed!r}")
    return int(seed)


def check_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """``generator`` if it is a ``torch.Generator`` (or ``None``), else a ``TypeError`` naming the option."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def seed_from_generator(generator: torch.Generator) -> int:
    """A seed in ``[0, 2**63 - 1)`` drawn from ``generator`` (advances it by one draw; one host sync off the CPU).

    Example:
        >>> import torch
        >>> a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        >>> seed_from_generator(a) == seed_from_generator(b), seed_from_generator(a) == seed_from_generator(b)
        (True, True)
    """
    return int(torch.randint(0, _SEED_BOUND, (1,), generator=generator, device=generator.device))


def _seed_device(device: torch.device, seed: int) -> None:
    """Seed the default generator of one accelerator (not every device, as ``torch.manual_seed`` would)."""
    module = getattr(torch, device.type)
    generators = getattr(module, "default_generators", None)
    if generators:
        index = device.index if device.index is not None else module.current_device()
        generators[index].manual_seed(seed)
    else:  # single-device backends (mps) expose only a module-level seed
        module.manual_seed(seed)


class RandomSource:
    """The random source of one stochastic backend: a ``seed``, a ``generator``, or the caller's global state.

    Args:
        seed: seed every call with this value (same images, same map).
        generator: draw each call's seed from this generator (a reproducible stream); exclusive with ``seed``.

    Example:
        >>> import numpy as np, random, torch
        >>> source = RandomSource(seed=7)
        >>> before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
        >>> with source.global_rngs(torch.device("cpu")):
        ...     first = torch.rand(2), np.random.rand()
        >>> with source.global_rngs(torch.device("cpu")):
        ...     second = torch.rand(2), np.random.rand()
        >>> torch.equal(first[0], second[0]) and first[1] == second[1]
        True
        >>> torch.equal(before[0], torch.get_rng_state()) and bool((before[1] == np.random.get_state()[1]).all())
        True
        >>> before[2] == random.getstate()
        True
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        self.seed = check_seed(seed)
        self.generator = check_generator(generator)
        if self.seed is not None and self.generator is not None:
            raise ValueError("give either seed or generator, not both")

    def call_seed(self) -> int | None:
        """The seed of the next call: ``seed``, a draw from ``generator``, or ``None`` (the caller's state)."""
        if self.generator is not None:
            return seed_from_generator(self.generator)
        return self.seed

    @contextlib.contextmanager
    def global_rngs(self, device: torch.device | str) -> Iterator[int | None]:
        """Fork torch's (CPU and ``device``), numpy's and Python's global RNGs for a library call.

        Inside the block they are seeded with :meth:`call_seed` (left as they are when it is ``None``); on exit,
        even on an exception, the caller's states are restored.

        Yields:
            The seed used, or ``None``.
        """
        device = torch.device(device)
        seed = self.call_seed()
        accelerators = [] if device.type == "cpu" else [device]
        fork = torch.random.fork_rng(
            devices=[d.index if d.index is not None else getattr(torch, d.type).current_device() for d in accelerators],
            device_type=device.type if accelerators else None,
        )
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            with fork:
                if seed is not None:
                    torch.random.default_generator.manual_seed(seed)
                    for accelerator in accelerators:
                        _seed_device(accelerator, seed)
                    np.random.seed(seed % 2**32)
                    random.seed(seed)
                yield seed
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)

    def __repr__(self) -> str:
        if self.generator is not None:
            return "generator"
        return f"seed={self.seed}"
