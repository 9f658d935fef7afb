"""Per-epoch metrics to ``metrics.jsonl`` and ``metrics.csv`` (and TensorBoard when asked for and installed, and an
experiment tracker such as Weights & Biases, :mod:`exaug.training.trackers`)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from .saliency_grid import save_png
from .trackers import create_tracker

__all__ = ["MetricsLogger", "read_metrics"]


class MetricsLogger:
    """Appends one row of metrics per epoch.

    ``metrics.jsonl`` is the source of truth (one JSON object per line, any keys); ``metrics.csv`` is rewritten
    from it after each row so that its header always covers every key seen so far.

    Args:
        folder: run folder.
        tensorboard: also write TensorBoard scalars (skipped with a warning if tensorboard is not installed).
        keep_rows_before: on resume, drop rows with ``epoch >= keep_rows_before`` (they will be recomputed).
        tracker: ``"files"`` (none) or ``"wandb"`` (:func:`~exaug.training.trackers.create_tracker`).
        run_config: the run's options, for the tracker.
    """

    def __init__(self, folder: str | Path, tensorboard: bool = False, keep_rows_before: int | None = None,
                 tracker: str = "files", run_config: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.folder / "metrics.jsonl"
        self.csv = self.folder / "metrics.csv"
        self.rows: list[dict[str, Any]] = read_metrics(self.folder) if keep_rows_before is not None else []
        if keep_rows_before is not None:
            self.rows = [r for r in self.rows if r.get("epoch", -1) < keep_rows_before]
        self._rewrite()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.folder / "tensorboard"))
            except ImportError:
                warnings.warn("tensorboard is not installed: pip install tensorboard; logging to files only")
        # Experiment tracker (``--logger``): the same rows, plus images.
        self.tracker = create_tracker(tracker, self.folder, run_config)

    @property
    def wants_images(self) -> bool:
        """Whether :meth:`log` has somewhere to show images besides PNG files (TensorBoard or a tracker)."""
        return self._tb is not None or self.tracker is not None

    def log(self, row: dict[str, Any], images: Mapping[str, Tensor] | None = None) -> None:
        """Append ``row`` (JSON-serialisable values) and refresh the CSV.

        ``images`` (name -> ``(3, H, W)`` in ``[0, 1]``, e.g. the saliency grid) go to
        ``<folder>/images/<name>_epoch<k>.png``, TensorBoard and the tracker.
        """
        self.rows.append(dict(row))
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self._write_csv()
        if self._tb is not None:
            step = int(row.get("epoch", len(self.rows)))
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self.tracker is not None:
            self.tracker.log(row)
        if images:
            self._log_images(images, int(row.get("epoch", len(self.rows))))

    def _log_images(self, images: Mapping[str, Tensor], epoch: int) -> None:
        for name, image in images.items():
            save_png(image, self.folder / "images" / f"{name}_epoch{epoch:04d}.png")
            if self._tb is not None:
                self._tb.add_image(name, image, epoch)
        if self._tb is not None:
            self._tb.flush()
        if self.tracker is not None:
            self.tracker.log_images(images, epoch)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self.tracker is not None:
            self.tracker.close()

    def _rewrite(self) -> None:
        with self.jsonl.open("w") as handle:
            for row in self.rows:
                handle.write(json.dumps(row) + "\n")
        self._write_csv()

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def read_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """Rows of ``<folder>/metrics.jsonl`` (empty if the file does not exist)."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
