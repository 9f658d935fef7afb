"""``--trust-checkpoint``: the one opt-in to load a checkpoint that holds arbitrary Python objects.

Every command that loads a checkpoint (``exaug train --resume``, ``exaug evaluate``, ``exaug explain --run``)
loads it with ``torch.load(..., weights_only=True)`` and refuses such a file unless this flag is given (see
:mod:`exaug.utils.checkpoint`).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_trust_argument"]


def add_trust_argument(parser: argparse.ArgumentParser | Any, loads: str = "the checkpoint") -> None:
    """Add ``--trust-checkpoint`` (``args.trust_checkpoint``) to ``parser`` (or an argument group).

    Example:
        >>> import argparse
        >>> from exaug.cli.trust import add_trust_argument
        >>> parser = argparse.ArgumentParser()
        >>> add_trust_argument(parser)
        >>> parser.parse_args(["--trust-checkpoint"]).trust_checkpoint
        True
    """
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help=f"load {loads} even if it holds arbitrary Python objects (a checkpoint written by exaug before safe "
             "loading); unpickling can run code, so only for files from a trusted source",
    )
