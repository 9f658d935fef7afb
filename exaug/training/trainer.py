"""The training loop: data, networks, optimisers, checkpoints and resume, logging; the method is a plugin.

:class:`Trainer` runs any registered :class:`~exaug.training.methods.TrainingMethod` (``TrainConfig.method``;
see ``exaug.training.methods`` for the built-in ones and how to add one) and knows no method name: the method
runs each epoch's stages with the trainer's public helpers (:meth:`Trainer.reseed`,
:meth:`Trainer.contrastive_batches`, :meth:`Trainer.single_batches`, :meth:`Trainer.autocast`,
:meth:`Trainer.optimizer_step`, :meth:`Trainer.all_sum`, :meth:`Trainer.all_mean`, :meth:`Trainer.validate`).

Reproducibility: every stage of every epoch reseeds all generators from ``(seed, epoch, stage, rank)``, so a run
resumed from ``last.pt`` produces the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..augment import SaliencyCache, explainer_preset_options
from ..augment.saliency_cache import native_map_size
from ..explainers import explainer_uses_layer, resolve_explainer
from .. import models
from ..models import Classifier, LinearClassifier, SupConModel, default_explainer_layer
from ..utils.checkpoint import atomic_save, remove_stale_temporaries
from ..utils.threads import set_threads
from .config import TrainConfig
from .distributed import DistContext, setup_distributed
from .loaders import RunData, build_run_data
from .logger import MetricsLogger
from .methods import TrainingMethod, create_method, describe_methods
from .progress import ProgressBars, epoch_line
from .schedule import cosine_factor, seed_everything, stage_seed
from .state import CHECKPOINT_KEYS, branch_training, describe_changes, resume_training, training_state
from .trackers import epoch_saliency_grids

__all__ = ["CHECKPOINT_KEYS", "Trainer", "TrainingDiverged", "build_networks", "cosine_factor", "describe_methods",
           "seed_everything"]

Callback = Callable[["Trainer", dict[str, Any]], None]
#: Files of a run folder: a folder holding any of them is never trained into without ``resume``.
RUN_FILES = ("config.json", "last.pt", "best.pt", "interrupted.pt", "metrics.jsonl", "metrics.csv", "summary.json")


class TrainingDiverged(RuntimeError):
    """A loss, an embedding or a weight became NaN or infinite; the last good checkpoint is kept (exit code 1)."""


def build_networks(config: TrainConfig, num_classes: int, image_size: int) -> tuple[SupConModel, LinearClassifier]:
    """The networks ``config`` describes (:func:`exaug.models.build_networks` with the config's model options);
    what the trainer trains and :func:`~exaug.training.load_run` rebuilds."""
    return models.build_networks(config.model, num_classes=num_classes, image_size=image_size, width=config.width,
                                 head=config.head, feat_dim=config.feat_dim)


class Trainer:
    """Train one run as described by a :class:`TrainConfig` and write it to ``config.out``.

    Example:
        >>> import contextlib, io, tempfile
        >>> config = TrainConfig(method="exconb", dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16,
        ...                      epochs=1, batch_size=16, train_samples=32, eval_samples=16, quiet=True,
        ...                      device="cpu", out=tempfile.mkdtemp())
        >>> trainer = Trainer(config)
        >>> with contextlib.redirect_stdout(io.StringIO()):
        ...     summary = trainer.fit()
        >>> summary["status"], sorted(trainer.history[0])[:3]
        ('finished', ['background_per_batch', 'classifier_loss', 'classifier_lr'])

    Attributes of the method (``augment``, ``edda_augment``, ``cgc_layer_name``, ``contrastive_step_loss``, ...)
    are readable on the trainer too (``trainer.augment`` is ``trainer.method.augment``), as before methods
    were plugins.

    Args:
        config: the run's options.
        callbacks: called as ``callback(trainer, row)`` after each epoch's row is logged and checkpointed.
        allow_changes: with ``config.resume``, let options that change the run's meaning differ from the
            checkpoint's (they take effect, and are recorded with their epoch in ``config.json`` and
            ``metrics.jsonl``); without it such a resume is refused with the list of differences.
        trust_checkpoint: with ``config.resume``, load a ``last.pt`` that needs arbitrary Python objects (see
            :func:`~exaug.utils.checkpoint.load_checkpoint`); only for files from a trusted source.
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = (), *, allow_changes: bool = False,
                 trust_checkpoint: bool = False) -> None:
        self.config = config
        self.allow_changes = allow_changes
        self.trust_checkpoint = trust_checkpoint
        self.callbacks = list(callbacks)
        self.ctx: DistContext = setup_distributed(config.device)
        self.device = self.ctx.device
        self.out = Path(config.out)
        set_threads(config.threads)  # None: torch's setting (the `exaug` command has set the default)
        seed_everything(config.seed)

        self.data: RunData = build_run_data(config, self.ctx)
        self.image_size = self.data.image_size
        # Built right after seeding, in a fixed order: the initial weights are a function of the seed.
        self.model, self.classifier = build_networks(config, self.data.num_classes, self.image_size)
        if self.ctx.enabled and config.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)
        self.classifier.to(self.device)
        self.memory_format = memory_format
        # images -> logits, sharing the encoder: what explanations and validation use.
        self.classifier_model = Classifier(self.model.encoder, self.classifier)

        self.method: TrainingMethod = create_method(config.method, self)
        self.total_epochs = self.method.total_epochs(config)
        #: One past the last epoch this invocation runs (``stop_after``; the schedules still span the whole run).
        self.stop_epoch = min(self.total_epochs, config.stop_after or self.total_epochs)
        self._build_optimizers()
        self._build_explanation_settings()
        self.method.setup()
        self._build_forward_modules()
        fp16_cuda = config.amp == "fp16" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self.progress = ProgressBars(enabled=not config.quiet and self.ctx.is_main, batch_size=config.batch_size)
        self.start_epoch = 0
        self._current_epoch = 0
        self.best_val = -1.0
        self.history: list[dict[str, Any]] = []
        #: Options changed on resume (``--allow-changes``, longer ``--epochs``): ``{option, old, new, epoch}``.
        self.changes: list[dict[str, Any]] = []
        #: With ``init_from``: the warm-up checkpoint's path, SHA-256, epoch, method and the options that differ.
        self.branched_from: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: read-only access to the method's attributes.
        method = self.__dict__.get("method")
        if method is not None and not name.startswith("__") and hasattr(method, name):
            return getattr(method, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- construction ---------------------------------------------------------------------------------------
    def _build_optimizers(self) -> None:
        c = self.config
        self.encoder_optimizer = torch.optim.SGD(self.method.encoder_parameters(), lr=c.lr, momentum=c.momentum,
                                                 weight_decay=c.weight_decay)
        self.classifier_optimizer = torch.optim.SGD(self.classifier.parameters(), lr=c.classifier_lr,
                                                    momentum=c.momentum)
        clf_epochs = self.method.classifier_schedule_epochs()
        self.encoder_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.encoder_optimizer, lambda e: cosine_factor(e, c.epochs, c.warmup_epochs, c.lr_min_factor)
        )
        self.classifier_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.classifier_optimizer, lambda e: cosine_factor(e, clf_epochs, 0, c.lr_min_factor)
        )

    def _build_explanation_settings(self) -> None:
        """The explainer layer and options every explaining method shares, and the saliency cache."""
        c = self.config
        self.explainer_layer = c.explainer_layer or default_explainer_layer(c.model, self.image_size,
                                                                            c.explainer_preset)
        options = {**explainer_preset_options(c.explainer_preset, c.explainer), **c.explainer_options}
        if self.explainer_layer is not None and "target_layer" not in options and explainer_uses_layer(c.explainer):
            options["target_layer"] = self.explainer_layer
        self.explainer_options = options
        # The one place the cache is built. One slot per image of the whole training split on every rank: under
        # torchrun the DistributedSampler reshuffles images across ranks each epoch, so a rank often meets an image
        # it holds no map of and the hit rate is lower than on one device. Saved in last.pt (its maps are
        # buffers), so a resumed run serves the same maps as an uninterrupted one; under torchrun every rank holds
        # its own cache and only rank 0 writes checkpoints, so resumed ranks recompute their maps instead.
        # Maps are stored at the explainer's native resolution (probed once on a blank image, so memory_bytes is
        # final from the start) and upsampled on the training device when served.
        self.saliency_cache = None
        if self.method.uses_explanations and c.saliency_refresh_epochs > 1:
            image_shape = (len(self.data.mean), self.image_size, self.image_size)
            explainer = resolve_explainer(c.explainer, self.classifier_model, **options)
            self.saliency_cache = SaliencyCache(
                self.data.train_size, self.image_size, refresh_every=c.saliency_refresh_epochs,
                dtype=getattr(torch, c.saliency_cache_dtype),
                device="cpu" if c.saliency_cache_device == "cpu" else self.device,
                map_size=native_map_size(explainer, self.classifier_model, image_shape, self.device),
            )

    def _build_forward_modules(self) -> None:
        """The modules the training steps call: DDP-wrapped under torchrun, optionally compiled."""
        contrastive: nn.Module = self.model
        joint: nn.Module = self.classifier_model
        linear: nn.Module = self.classifier
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            contrastive = DistributedDataParallel(self.model, device_ids=ids)
            joint = DistributedDataParallel(self.classifier_model, device_ids=ids)
            linear = DistributedDataParallel(self.classifier, device_ids=ids)
        if self.config.compile:
            contrastive, joint = torch.compile(contrastive), torch.compile(joint)
        self.contrastive_forward, self.joint_forward, self.linear_forward = contrastive, joint, linear

    # -- public API -----------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train (resume, or branch from ``init_from``) to the end, or to ``stop_after`` (``status="stopped"``);
        returns the summary that is also written to ``summary.json``.

        A ``KeyboardInterrupt`` writes ``interrupted.pt`` (the state mid-epoch, so nothing trained is lost) next
        to ``last.pt`` (the last completed epoch, from which ``--resume`` continues exactly) and returns a
        summary with ``status="interrupted"``.
        """
        c = self.config
        # Nothing in the folder is written before the checkpoint (or the folder's emptiness) is validated.
        new_changes = self._resume() if c.resume else branch_training(self) if c.init_from else []
        if not c.resume:
            self._refuse_existing_run()
        if self.ctx.is_main:
            remove_stale_temporaries(self.out)  # left by writes a kill interrupted
        logger = MetricsLogger(self.out, tensorboard=c.tensorboard, keep_rows_before=self.start_epoch,
                               tracker=c.logger, run_config=c.to_dict()) if self.ctx.is_main else None
        if self.ctx.is_main:
            self._write_json("config.json", {**c.to_dict(), "resolved": self._resolved_settings(),
                                             "changes": self.changes})
        status = "finished"
        started = time.time()
        try:
            for epoch in range(self.start_epoch, self.stop_epoch):
                row = self._run_epoch(epoch)
                self._check_finite(epoch, row)
                if new_changes and epoch == self.start_epoch:
                    row["changes"] = describe_changes(new_changes)
                self.history.append(row)
                if logger is not None:
                    logger.log(row, epoch_saliency_grids(self) if logger.wants_images else None)
                self._save_checkpoints(epoch, row)
                if self.ctx.is_main:
                    print(epoch_line(row, self.total_epochs, self.method.print_keys), flush=True)
                for callback in self.callbacks:
                    callback(self, row)
        except KeyboardInterrupt:
            status = "interrupted"
            if self.ctx.is_main:
                atomic_save(self._state(self._current_epoch), self.out / "interrupted.pt")
                print(f"\ninterrupted: state saved to {self.out / 'interrupted.pt'}; "
                      f"`exaug train --resume --out {self.out}` continues from last.pt", file=sys.stderr)
        except TrainingDiverged:
            if self.ctx.is_main:
                self._write_json("summary.json", self._summary("diverged", time.time() - started))
            raise
        finally:
            if logger is not None:
                logger.close()
        if status == "finished" and self.stop_epoch < self.total_epochs:
            status = "stopped"  # by stop_after: `--resume` (or a branch) continues
        summary = self._summary(status, time.time() - started)
        if self.ctx.is_main:
            self._write_json("summary.json", summary)
        return summary

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        self.ctx.close()

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        self._current_epoch = epoch
        row: dict[str, Any] = {"epoch": epoch, "method": self.config.method}
        started = time.time()
        row.update(self.method.run_epoch(epoch))
        row["epoch_time"] = time.time() - started
        return row

    # -- helpers for the methods' stages --------------------------------------------------------------------
    def reseed(self, epoch: int, stage: int) -> None:
        """Seed every generator and the loaders for ``stage`` (0 encoder / joint, 1 classifier) of ``epoch``."""
        seed = stage_seed(self.config.seed, epoch, stage, self.ctx.rank)
        seed_everything(seed)
        self.data.set_epoch(epoch, seed)

    def contrastive_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """``(standard, view1, view2, labels, indices)`` batches on the device (see
        :meth:`~exaug.training.loaders.RunData.contrastive_batches`), under an ``encoder`` progress bar."""
        batches = self.data.contrastive_batches(self.device, self.memory_format)
        yield from self.progress.iterate(batches, len(self.data.contrastive), f"epoch {epoch + 1} encoder")

    def single_batches(self, epoch: int, stage: str) -> Iterator[tuple[Tensor, Tensor]]:
        """``(random view, labels)`` batches on the device, under a progress bar labelled ``stage``."""
        batches = self.data.single_batches(self.device, self.memory_format)
        yield from self.progress.iterate(batches, len(self.data.single), f"epoch {epoch + 1} {stage}")

    def optimizer_step(self, optimizer: torch.optim.Optimizer, loss: Tensor, epoch: int, step: int) -> None:
        """Backward ``loss`` and step ``optimizer`` (through the AMP scaler).

        Raises:
            TrainingDiverged: ``loss`` is NaN or infinite (checked before anything is updated).
        """
        if not torch.isfinite(loss):
            # Non-finite embeddings end here too: the methods' losses skip their own NaN check (a ValueError).
            raise TrainingDiverged(
                f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step} of method {self.config.method!r} "
                f"(NaN or inf in the embeddings, logits or loss); {self._kept_checkpoint()} (lower --lr or check "
                "the data)"
            )
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        self.progress.show_loss(step, loss)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The ``--amp`` autocast context of the training forwards (a no-op with ``amp="none"``)."""
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def all_sum(self, value: Tensor) -> float:
        """Sum over ranks, as a Python float (one host sync)."""
        if self.ctx.enabled:
            value = value.clone()
            torch.distributed.all_reduce(value)
        return float(value)

    def all_mean(self, total: Tensor, steps: int) -> float:
        """``total`` summed over ranks divided by the steps of all ranks."""
        return self.all_sum(total) / max(steps * self.ctx.world_size, 1)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Top-1 and mean cross-entropy of encoder + linear classifier on the validation split (over all ranks);
        the networks' train/eval flags are restored afterwards."""
        flags = [(m, m.training) for m in self.classifier_model.modules()]
        self.classifier_model.eval()
        hits = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        seen = torch.zeros((), device=self.device)
        try:
            for images, labels in self.data.val_batches(self.device, self.memory_format):
                with self.autocast():
                    logits = self.classifier_model(images).float()
                hits += (logits.argmax(1) == labels).sum()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum")
                seen += labels.shape[0]
        finally:
            for module, flag in flags:
                module.training = flag
        n = max(self.all_sum(seen), 1.0)
        return {"val_top1": 100.0 * self.all_sum(hits) / n, "val_loss": self.all_sum(loss_sum) / n}

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _state(self, next_epoch: int) -> dict[str, Any]:
        """Everything a checkpoint holds (:func:`~exaug.training.state.training_state`)."""
        return training_state(self, next_epoch)

    def _check_finite(self, epoch: int, row: dict[str, Any]) -> None:
        """Raise :class:`TrainingDiverged` before a diverged epoch can be checkpointed: a non-finite loss in
        ``row`` or a non-finite weight or buffer (one host sync per epoch)."""
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        tensors = [t for net in (self.model, self.classifier) for t in net.state_dict().values()
                   if t.is_floating_point()]
        if not bad and bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            return
        what = f"non-finite {', '.join(bad)}" if bad else "non-finite weights"
        raise TrainingDiverged(f"{what} at the end of epoch {epoch} of method {self.config.method!r}; "
                               f"{self._kept_checkpoint()} (lower --lr or check the data)")

    def _kept_checkpoint(self) -> str:
        """What a diverged run leaves behind, naming only files that exist."""
        last = self.out / "last.pt"
        if self.history and last.is_file():
            return f"the last good checkpoint is kept: {str(last)!r} (after epoch {self.history[-1]['epoch']})"
        return f"no epoch finished, so no checkpoint was written to {str(self.out)!r}"

    def _save_checkpoints(self, epoch: int, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        val = row.get("val_top1")
        improved = val is not None and val > self.best_val
        if improved:
            self.best_val = val
        state = self._state(epoch + 1)
        # best.pt first: a kill between the writes leaves last.pt one epoch behind, and the resumed run redoes
        # that epoch (deterministically) and rewrites best.pt; summary.json's best comes from last.pt's history,
        # so it never reports a best that best.pt does not hold.
        if improved:
            atomic_save(state, self.out / "best.pt")
        atomic_save(state, self.out / "last.pt")

    def _refuse_existing_run(self) -> None:
        found = [name for name in RUN_FILES if (self.out / name).exists()]
        if self.ctx.is_main and found:
            raise FileExistsError(f"{str(self.out)!r} already holds a run ({', '.join(found)}); pass --resume to "
                                  "continue it or choose another --out")

    def _resume(self) -> list[dict[str, Any]]:
        """Load, validate and restore ``last.pt`` (:func:`~exaug.training.state.resume_training`)."""
        return resume_training(self)

    # -- reporting ------------------------------------------------------------------------------------------
    def _resolved_settings(self) -> dict[str, Any]:
        return {
            "num_classes": self.data.num_classes,
            "image_size": self.image_size,
            "explainer_layer": self.explainer_layer,
            "saliency_cache_bytes": self.saliency_cache.memory_bytes if self.saliency_cache is not None else 0,
            "train_images": self.data.train_size,
            "val_images": self.data.val_size,
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "exaug_version": __version__,
            "torch_version": torch.__version__,
            "branched_from": self.branched_from,
            **self.method.resolved_settings(),
        }

    def _summary(self, status: str, seconds: float) -> dict[str, Any]:
        vals = [r["val_top1"] for r in self.history if "val_top1" in r]
        # The first epoch reaching the best: the one best.pt holds (it is rewritten only on a strict improvement).
        best_epoch = next((r["epoch"] for r in self.history if vals and r.get("val_top1") == max(vals)), None)
        return {
            "status": status,
            "method": self.config.method,
            "epochs_completed": len(self.history) and self.history[-1]["epoch"] + 1,
            "final_val_top1": vals[-1] if vals else None,
            "best_val_top1": max(vals) if vals else None,
            "best_epoch": best_epoch,
            "seconds": seconds,
            "out": str(self.out),
            **self._resolved_settings(),
        }

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        tmp.replace(self.out / name)
