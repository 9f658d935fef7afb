"""Experiment trackers next to ``metrics.jsonl`` / ``metrics.csv``: Weights & Biases (``exaug train --logger wandb``).

A tracker receives what the :class:`~exaug.training.logger.MetricsLogger` writes: every epoch's row (the same
numbers as ``metrics.jsonl``) and, on the epochs that explain, the saliency grid (:func:`epoch_saliency_grids`).
Weights & Biases is an optional extra (``pip install "exaug[wandb]"``); ``WANDB_MODE=offline`` logs without a
network (``wandb sync`` uploads later), ``WANDB_PROJECT`` names the project (default ``exaug``), and the run id is
kept in ``<out>/wandb_run_id`` so that ``--resume`` continues the same W&B run.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor

from ..augment import ExplanationMaskAugment
from .saliency_grid import draw_saliency_grid, to_uint8_hwc

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from .trainer import Trainer

__all__ = ["TRACKERS", "WandbTracker", "create_tracker", "epoch_saliency_grids"]

#: Values of ``TrainConfig.logger``: ``files`` writes only the metric files (and TensorBoard when asked for).
TRACKERS: tuple[str, ...] = ("files", "wandb")
#: Images per saliency grid (the first validation images, the same ones every epoch).
GRID_IMAGES = 8


class WandbTracker:
    """One Weights & Biases run per run folder: per-epoch rows with ``epoch`` as the x axis, and images.

    Example:
        >>> import os, tempfile, torch
        >>> os.environ["WANDB_MODE"], os.environ["WANDB_SILENT"] = "offline", "true"
        >>> tracker = WandbTracker(tempfile.mkdtemp(), {"method": "exconb"})  # doctest: +SKIP
        >>> tracker.log({"epoch": 0, "encoder_loss": 4.2})  # doctest: +SKIP
        >>> tracker.log_images({"saliency_grid": torch.rand(3, 12, 24)}, epoch=0)  # doctest: +SKIP
        >>> tracker.close()  # doctest: +SKIP

    (Skipped as a doctest: it starts W&B's service process; ``tests/training/test_trackers.py`` runs it.)

    Args:
        folder: the run folder; W&B writes under ``<folder>/wandb`` and the run id goes to
            ``<folder>/wandb_run_id``.
        config: the run's options, shown as the W&B run config.
        project: W&B project (default: ``$WANDB_PROJECT``, else ``"exaug"``).
    """

    def __init__(self, folder: str | Path, config: Mapping[str, Any] | None = None,
                 project: str | None = None) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError('logger="wandb" needs Weights & Biases: pip install "exaug[wandb]" (or wandb)') from err
        self._wandb = wandb
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # The same id after --resume: W&B appends to the run instead of starting a new one.
        id_file = folder / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "exaug"), dir=str(folder),
                              id=run_id, resume="allow", name=folder.name, config=dict(config or {}))
        # Rows are re-logged after a resume: W&B's own step only grows, so charts use the epoch as x axis.
        self.run.define_metric("*", step_metric="epoch")

    def log(self, row: Mapping[str, Any]) -> None:
        """Log the numbers of one epoch's row (strings such as ``method`` are in the run config)."""
        self.run.log({k: v for k, v in row.items() if isinstance(v, (int, float))})

    def log_images(self, images: Mapping[str, Tensor], epoch: int) -> None:
        """Log ``(3, H, W)`` images in ``[0, 1]`` at ``epoch``."""
        self.run.log({"epoch": epoch, **{k: self._wandb.Image(to_uint8_hwc(v).numpy()) for k, v in images.items()}})

    def close(self) -> None:
        """Finish the W&B run (flushes the offline files)."""
        self.run.finish()


def create_tracker(name: str, folder: str | Path, config: Mapping[str, Any] | None = None) -> WandbTracker | None:
    """The tracker ``TrainConfig.logger`` names, or ``None`` for ``"files"``."""
    if name not in TRACKERS:
        raise ValueError(f"logger must be one of {', '.join(TRACKERS)}, got {name!r}")
    return WandbTracker(folder, config) if name == "wandb" else None


def epoch_saliency_grids(trainer: "Trainer", images: int = GRID_IMAGES) -> dict[str, Tensor]:
    """``{"saliency_grid": image}`` of the epoch that just ended, or ``{}`` when it did not explain.

    The grid shows the first ``images`` validation images (the same every epoch) through the method's
    :class:`~exaug.ExplanationMaskAugment` (``excon``, ``exconb`` from ``exp_start_epoch`` on) with the current
    encoder + classifier; drawing it leaves training exactly as it was (:func:`draw_saliency_grid`).

    Shape:
        The image: ``(3, 3 * (H + 4), images * (W + 4))`` in ``[0, 1]``.
    """
    augment = getattr(trainer.method, "augment", None)
    if not isinstance(augment, ExplanationMaskAugment) or not augment.enabled:
        return {}
    batch, labels = next(iter(trainer.data.val_batches(trainer.device, trainer.memory_format)))
    with torch.enable_grad():
        grid = draw_saliency_grid(augment, trainer.classifier_model, batch[:images], labels[:images],
                                  trainer.data.mean, trainer.data.std)
    return {"saliency_grid": grid}
