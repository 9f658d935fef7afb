"""Load a finished (or interrupted) training run folder for evaluation, explanation or further use."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..models import Classifier, LinearClassifier, SupConModel, build_networks
from ..utils.checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .logger import read_metrics
from .methods import get_method
from .state import CHECKPOINT_KEYS, validate_checkpoint

__all__ = ["TrainedRun", "load_run"]


@dataclasses.dataclass
class TrainedRun:
    """A trained run: its configuration, networks (in eval mode) and logs.

    Attributes:
        folder: the run folder.
        config: the run's :class:`TrainConfig`.
        model: encoder + projection head (L2-normalised embeddings).
        classifier: the linear classifier on encoder features.
        classifier_model: images -> logits (``encoder`` then ``classifier``), what explainers consume.
        num_classes, image_size: from the run's resolved settings.
        epoch: number of completed epochs in the loaded checkpoint.
        metrics: the rows of ``metrics.jsonl``.
        summary: ``summary.json`` (``None`` if the run never finished or was interrupted before writing it).
        resolved: the ``resolved`` settings of ``config.json``: what training derived from the config
            (``num_classes``, ``image_size``, ``explainer_layer``, ...); empty for a run that recorded none.
    """

    folder: Path
    config: TrainConfig
    model: SupConModel
    classifier: LinearClassifier
    classifier_model: Classifier
    num_classes: int
    image_size: int
    epoch: int
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    resolved: dict[str, Any] = dataclasses.field(default_factory=dict)

    def dataset(self, split: str = "test", samples: int | None = None, held_out: bool = False) -> Dataset:
        """The run's dataset split with the standard view (resize + normalise), as validation saw it; with
        ``held_out``, without the test images the run validated on (see
        :func:`~exaug.training.loaders.build_eval_dataset`)."""
        from .loaders import build_eval_dataset

        return build_eval_dataset(self.config, split, samples, held_out=held_out)


def load_run(folder: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu", *,
             trust: bool | None = None) -> TrainedRun:
    """Rebuild the networks of a run folder written by :class:`~exaug.training.Trainer`.

    Args:
        folder: the run's ``--out`` folder.
        checkpoint: ``"best"`` (highest validation top-1; falls back to ``last`` if absent), ``"last"``, or the
            path of a ``.pt`` file.
        device: where to put the networks.
        trust: load a checkpoint that needs arbitrary Python objects (unpickling runs their code: only for files
            from a trusted source; ``--trust-checkpoint`` on the command line). Default: refuse it, unless
            inside :func:`~exaug.utils.checkpoint.trusted_checkpoints`.

    Raises:
        FileNotFoundError: ``folder`` is not a run folder.
        CheckpointError: the checkpoint is missing, corrupt, unsafe (without ``trust``) or does not match its
            config; one line naming the file.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not an exaug run folder (no config.json); pass the --out of "
                                "`exaug train`")
    if checkpoint in ("best", "last"):
        path = folder / f"{checkpoint}.pt"
        if checkpoint == "best" and not path.is_file():
            path = folder / "last.pt"
    else:
        path = Path(checkpoint)
    state = load_checkpoint(path, required_keys=CHECKPOINT_KEYS, trust=trust)
    validate_checkpoint(state, path)
    try:
        resolved = json.loads((folder / "config.json").read_text()).get("resolved", {})
    except (ValueError, AttributeError) as err:
        raise CheckpointError(f"{str(folder / 'config.json')!r} is not a JSON object of options ({err})") from err
    try:
        config = TrainConfig.from_dict(state["config"])
        validate_checkpoint(state, path, get_method(config.method).total_epochs(config))  # epoch within the run
        num_classes = int(resolved.get("num_classes") or state["classifier"]["fc.weight"].shape[0])
        image_size = int(resolved.get("image_size") or config.image_size or 32)
        model, classifier = build_networks(config.model, num_classes=num_classes, image_size=image_size,
                                           width=config.width, head=config.head, feat_dim=config.feat_dim)
        model.load_state_dict(state["model"])
        classifier.load_state_dict(state["classifier"])
    except CheckpointError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        text = " ".join(str(err).split())[:300]
        raise CheckpointError(f"checkpoint {str(path)!r} does not match the networks of its config "
                              f"({type(err).__name__}: {text})") from err
    model.to(device).eval()
    classifier.to(device).eval()
    summary_path = folder / "summary.json"
    return TrainedRun(
        folder=folder,
        config=config,
        model=model,
        classifier=classifier,
        classifier_model=Classifier(model.encoder, classifier),
        num_classes=num_classes,
        image_size=image_size,
        epoch=int(state["epoch"]),
        metrics=read_metrics(folder),
        summary=json.loads(summary_path.read_text()) if summary_path.is_file() else None,
        resolved=resolved,
    )
