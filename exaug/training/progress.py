"""What a training run shows while it runs: tqdm bars per stage and one printed line per epoch."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from torch import Tensor

__all__ = ["PROGRESS_EVERY", "ProgressBars", "epoch_line"]

#: Steps between loss updates on the progress bar (each one is a host sync).
PROGRESS_EVERY = 10


class ProgressBars:
    """A tqdm bar in images/s over each stage's batches, showing the loss every :data:`PROGRESS_EVERY` steps.

    Args:
        enabled: show bars (off with ``--quiet`` and on ranks other than 0).
        batch_size: images per step (the bar counts images).
    """

    def __init__(self, enabled: bool, batch_size: int) -> None:
        self.enabled = enabled
        self.batch_size = batch_size
        self._bar: Any = None

    def iterate(self, batches: Iterable[Any], total: int, desc: str) -> Iterator[Any]:
        """Yield ``batches`` under a bar of ``total`` steps labelled ``desc``."""
        if not self.enabled:
            yield from batches
            return
        from tqdm.auto import tqdm  # deferred: only runs with bars need it

        with tqdm(total=total, desc=desc, leave=False, unit="img", unit_scale=self.batch_size,
                  dynamic_ncols=True) as bar:
            self._bar = bar
            try:
                for batch in batches:
                    yield batch
                    bar.update(1)
            finally:
                self._bar = None

    def show_loss(self, step: int, loss: Tensor) -> None:
        """Put ``loss`` on the open bar every :data:`PROGRESS_EVERY` steps (``loss.item()`` syncs)."""
        if self._bar is not None and step % PROGRESS_EVERY == 0:
            self._bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)


def epoch_line(row: dict[str, Any], total_epochs: int, keys: Sequence[str]) -> str:
    """The printed summary of an epoch's ``row``: ``epoch n/N``, the ``keys`` present in it, the time.

    Example:
        >>> epoch_line({"epoch": 0, "encoder_loss": 2.41, "val_top1": 9.375, "epoch_time": 0.31}, 2,
        ...            ("encoder_loss", "classifier_loss", "val_top1"))
        'epoch 1/2  encoder_loss 2.41  val_top1 9.375  0.3s'
    """
    parts = [f"epoch {row['epoch'] + 1}/{total_epochs}"]
    parts.extend(f"{key} {row[key]:.4g}" for key in keys if key in row)
    parts.append(f"{row['epoch_time']:.1f}s")
    return "  ".join(parts)
