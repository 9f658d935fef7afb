"""The reference trainer of the ExCon paper (Algorithm 1) and its baselines.

Methods (``TrainConfig.method``):

* ``supcon``, ``excon``, ``exconb``: every epoch, one encoder epoch with the contrastive loss (the linear
  classifier is not updated, it only serves the explanations), then one linear-classifier epoch on frozen
  encoder features, then validation. ``excon``/``exconb`` add :class:`~exaug.ExplanationMaskAugment` from
  ``exp_start_epoch`` on; with ``saliency_refresh_epochs`` > 1 it reuses each image's map from a
  :class:`~exaug.augment.SaliencyCache` between refreshes.
* ``supcon_ori``: the classic two-stage schedule, all encoder epochs, then all classifier epochs.
* ``ce``: encoder and classifier trained jointly with cross-entropy.
* ``edda``: ``ce`` with :class:`~exaug.augment.EDDAAugment` occlusions mixed into each batch (soft-target
  cross-entropy) from ``edda_start_epoch`` on.
* ``cgc``: ``ce`` plus ``cgc_lambda`` times the contrastive Grad-CAM consistency loss (:class:`~exaug.losses.CGCLoss`)
  between the replayed-transformed Grad-CAM of each image and the Grad-CAM of its augmented view.

Reproducibility: every stage of every epoch reseeds all generators from ``(seed, epoch, stage, rank)``, so a run
resumed from ``last.pt`` produces the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..augment import AugmentedBatch, EDDAAugment, ExplanationMaskAugment, ReplayableSpatial, SaliencyCache
from ..explainers import explainer_uses_layer, resolve_layer
from ..explainers.base import find_default_cam_layer
from ..losses import CGCLoss, ExConBLoss, SupConLoss, cgc_heatmaps
from ..models import Classifier, LinearClassifier, SupConModel, create_encoder, default_explainer_layer
from ..utils.checkpoint import CheckpointError, atomic_save, load_checkpoint
from .config import TrainConfig
from .distributed import DistContext, setup_distributed
from .loaders import RunData, build_run_data
from .logger import MetricsLogger

__all__ = ["Trainer", "TrainingDiverged", "build_networks", "cosine_factor", "seed_everything"]

Callback = Callable[["Trainer", dict[str, Any]], None]
JointStep = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor, dict[str, Tensor]]]
#: Steps between loss updates on the progress bar (each one is a host sync).
PROGRESS_EVERY = 10
CHECKPOINT_KEYS = ("config", "epoch", "model", "classifier", "optimizers", "schedulers")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def cosine_factor(epoch: int, total: int, warmup: int = 0, min_factor: float = 1e-3) -> float:
    """Learning-rate multiplier of ``epoch``: linear warm-up, then cosine from 1 to ``min_factor``."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (epoch - warmup) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_networks(config: TrainConfig, num_classes: int, image_size: int) -> tuple[SupConModel, LinearClassifier]:
    """The encoder + projection head and the linear classifier that ``config`` describes (on the CPU)."""
    encoder = create_encoder(config.model, width=config.width, image_size=image_size)
    model = SupConModel(encoder, head=config.head, feat_dim=config.feat_dim)
    return model, LinearClassifier(encoder.num_features, num_classes)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Train one run as described by a :class:`TrainConfig` and write it to ``config.out``.

    Example:
        >>> trainer = Trainer(TrainConfig(method="exconb", dataset="synthetic", model="resnet18", width=0.25,
        ...                               epochs=3, batch_size=64, out="runs/demo"))
        >>> summary = trainer.fit()

    Args:
        config: the run's options.
        callbacks: called as ``callback(trainer, row)`` after each epoch's row is logged and checkpointed.
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.ctx: DistContext = setup_distributed(config.device)
        self.device = self.ctx.device
        self.out = Path(config.out)
        seed_everything(config.seed)

        self.data: RunData = build_run_data(config, self.ctx)
        self.image_size = self.data.image_size
        self.model, self.classifier = build_networks(config, self.data.num_classes, self.image_size)
        if self.ctx.enabled and config.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)
        self.classifier.to(self.device)
        self.memory_format = memory_format
        # images -> logits, sharing the encoder: what explanations and validation use.
        self.classifier_model = Classifier(self.model.encoder, self.classifier)

        self.total_epochs = config.epochs + (self._classifier_epochs if config.method == "supcon_ori" else 0)
        self._build_optimizers()
        self._build_losses_and_augment()
        self._build_forward_modules()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16" and self.device.type == "cuda")
        self.start_epoch = 0
        self._current_epoch = 0
        self._bar: Any = None
        self.best_val = -1.0
        self.history: list[dict[str, Any]] = []

    # -- construction ---------------------------------------------------------------------------------------
    @property
    def _classifier_epochs(self) -> int:
        return self.config.classifier_epochs or self.config.epochs

    def _build_optimizers(self) -> None:
        c = self.config
        if c.is_joint:
            encoder_params = list(self.classifier_model.parameters())
        else:
            encoder_params = list(self.model.parameters())
        self.encoder_optimizer = torch.optim.SGD(encoder_params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self.classifier_optimizer = torch.optim.SGD(self.classifier.parameters(), lr=c.classifier_lr, momentum=c.momentum)
        clf_epochs = self._classifier_epochs if c.method == "supcon_ori" else c.epochs
        self.encoder_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.encoder_optimizer, lambda e: cosine_factor(e, c.epochs, c.warmup_epochs, c.lr_min_factor)
        )
        self.classifier_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.classifier_optimizer, lambda e: cosine_factor(e, clf_epochs, 0, c.lr_min_factor)
        )

    def _build_losses_and_augment(self) -> None:
        c = self.config
        gather = self.ctx.enabled
        if c.method == "exconb":
            self.contrastive_loss: nn.Module = ExConBLoss(
                c.temperature, c.base_temperature, gather_distributed=gather, background_copies=c.background_copies
            )
        else:
            self.contrastive_loss = SupConLoss(c.temperature, base_temperature=c.base_temperature,
                                               gather_distributed=gather)
        self.explainer_layer = c.explainer_layer or default_explainer_layer(c.model, self.image_size)
        options = dict(c.explainer_options)
        if self.explainer_layer is not None and "target_layer" not in options and explainer_uses_layer(c.explainer):
            options["target_layer"] = self.explainer_layer
        # One slot per image of the whole training split on every rank: under torchrun the DistributedSampler
        # reshuffles images across ranks each epoch, so a rank often meets an image it holds no map of and the hit
        # rate is lower than on one device. Not checkpointed: a resumed run recomputes its maps.
        self.saliency_cache = SaliencyCache(
            self.data.train_size, self.image_size, refresh_every=c.saliency_refresh_epochs, device=self.device
        ) if c.uses_explanations and c.saliency_refresh_epochs > 1 else None
        self.augment = ExplanationMaskAugment(
            explainer=c.explainer,
            mode="exconb" if c.method == "exconb" else "excon",
            threshold=c.mask_threshold,
            keep_fraction=c.keep_fraction,
            fill=c.mask_fill,
            target=c.mask_target,
            explainer_options=options,
            enabled=False,
            cache=self.saliency_cache,
        )
        if c.method == "edda":
            self.edda_augment = EDDAAugment(
                explainer=c.explainer,
                salient_fraction=c.edda_fraction,
                target=c.edda_target,  # type: ignore[arg-type]
                policy=c.edda_policy,  # type: ignore[arg-type]
                fill=c.mask_fill,  # type: ignore[arg-type]
                confidence=c.edda_confidence,
                confidence_scale=c.edda_confidence_scale,
                explain=c.mask_target,  # type: ignore[arg-type]
                explainer_options=options,
            )
        if c.method == "cgc":
            self.cgc_loss = CGCLoss(c.cgc_temperature, gather_distributed=gather)
            self.cgc_transform = ReplayableSpatial(scale=(0.08, 1.0))
            if c.cgc_layer is None:
                # The encoder's last feature map (layer4 for ResNets), found with one eval-mode forward.
                probe = torch.zeros(2, 3, self.image_size, self.image_size, device=self.device)
                self.cgc_layer_name = find_default_cam_layer(self.classifier_model, probe)
            else:
                self.cgc_layer_name = c.cgc_layer
            self.cgc_layer_name, self.cgc_layer = resolve_layer(self.classifier_model, self.cgc_layer_name)

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
        """Train (or resume) to the end; returns the summary that is also written to ``summary.json``.

        A ``KeyboardInterrupt`` writes ``interrupted.pt`` (the state mid-epoch, so nothing trained is lost) next
        to ``last.pt`` (the last completed epoch, from which ``--resume`` continues exactly) and returns a
        summary with ``status="interrupted"``.
        """
        c = self.config
        if c.resume:
            self._resume()
        elif self.ctx.is_main and (self.out / "last.pt").exists():
            raise FileExistsError(
                f"{str(self.out)!r} already holds a run (last.pt); pass --resume to continue it or choose another --out"
            )
        logger = MetricsLogger(self.out, tensorboard=c.tensorboard, keep_rows_before=self.start_epoch) \
            if self.ctx.is_main else None
        if self.ctx.is_main:
            self._write_json("config.json", {**c.to_dict(), "resolved": self._resolved_settings()})
        status = "finished"
        started = time.time()
        try:
            for epoch in range(self.start_epoch, self.total_epochs):
                row = self._run_epoch(epoch)
                self.history.append(row)
                if logger is not None:
                    logger.log(row)
                self._save_checkpoints(epoch, row)
                self._print_epoch(row)
                for callback in self.callbacks:
                    callback(self, row)
        except KeyboardInterrupt:
            status = "interrupted"
            if self.ctx.is_main:
                atomic_save(self._state(self._current_epoch), self.out / "interrupted.pt")
                print(f"\ninterrupted: state saved to {self.out / 'interrupted.pt'}; "
                      f"`exaug train --resume --out {self.out}` continues from last.pt", file=sys.stderr)
        finally:
            if logger is not None:
                logger.close()
        summary = self._summary(status, time.time() - started)
        if self.ctx.is_main:
            self._write_json("summary.json", summary)
        return summary

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        self.ctx.close()

    # -- epochs ---------------------------------------------------------------------------------------------
    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        self._current_epoch = epoch
        c = self.config
        row: dict[str, Any] = {"epoch": epoch, "method": c.method}
        started = time.time()
        if c.is_joint:
            epoch_fn = {"ce": self._ce_epoch, "edda": self._edda_epoch, "cgc": self._cgc_epoch}[c.method]
            row.update(epoch_fn(epoch))
            row.update(self._validate())
        elif c.method == "supcon_ori" and epoch >= c.epochs:
            row.update(self._classifier_epoch(epoch))
            row.update(self._validate())
        else:
            row.update(self._encoder_epoch(epoch))
            if c.method != "supcon_ori":
                row.update(self._classifier_epoch(epoch))
                row.update(self._validate())
        row["epoch_time"] = time.time() - started
        return row

    def _reseed(self, epoch: int, stage: int) -> None:
        seed = ((self.config.seed * 1_000_003 + epoch) * 7 + stage) * 1009 + self.ctx.rank
        seed_everything(seed)
        self.data.set_epoch(epoch, seed)

    def _encoder_epoch(self, epoch: int) -> dict[str, Any]:
        c = self.config
        self._reseed(epoch, 0)
        self.model.train()
        self.augment.enabled = c.uses_explanations and epoch >= c.exp_start_epoch
        cache = self.saliency_cache
        if cache is not None:
            cache.set_epoch(epoch)
            hits_before, misses_before = cache.hits, cache.misses
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        background = torch.zeros((), device=self.device)
        kept = torch.zeros((), device=self.device)
        images_seen = 0
        steps = 0
        for step, (standard, view1, view2, labels, indices) in enumerate(self._contrastive_batches(epoch)):
            loss, batch = self.contrastive_step_loss(standard, view1, view2, labels, indices)
            self._step(self.encoder_optimizer, loss, epoch, step)
            loss_sum += loss.detach()
            if batch.correct is not None:
                correct += batch.correct.sum()
                kept += batch.keep.float().mean(dim=(1, 2, 3)).sum()
                background += batch.background.sum()
            images_seen += labels.shape[0]
            steps += 1
        lr = self.encoder_optimizer.param_groups[0]["lr"]
        self.encoder_scheduler.step()
        row = {"encoder_loss": self._mean(loss_sum, steps), "lr": lr, "explanations": self.augment.enabled}
        if self.augment.enabled:
            n = self._sum(torch.tensor(float(images_seen), device=self.device))
            row["masked_correct"] = self._sum(correct) / max(n, 1.0)
            row["kept_area"] = self._sum(kept) / max(n, 1.0)
            row["background_per_batch"] = self._sum(background) / max(steps * self.ctx.world_size, 1)
            if cache is not None:
                # Fraction of this epoch's explained rows served from the cache (all ranks).
                hits = self._sum(torch.tensor(float(cache.hits - hits_before), device=self.device))
                misses = self._sum(torch.tensor(float(cache.misses - misses_before), device=self.device))
                row["saliency_cache_hits"] = hits / max(hits + misses, 1.0)
        return row

    def contrastive_step_loss(
        self, standard: Tensor, view1: Tensor, view2: Tensor, labels: Tensor, indices: Tensor | None = None
    ) -> tuple[Tensor, AugmentedBatch]:
        """Loss of one encoder step (augmentation, projection, SupCon or ExConB loss); no optimiser step.

        Args:
            standard, view1, view2: ``(B, C, H, W)`` on the device; labels ``(B,)``.
            indices: ``(B,)`` positions of the images in the training split; required when the saliency cache is
                on (``saliency_refresh_epochs`` > 1).

        Returns:
            ``(loss, batch)``: the scalar loss (local anchors against the global batch under torchrun) and the
            :class:`~exaug.AugmentedBatch` it was computed on.
        """
        batch = self.augment(standard, (view1, view2), labels, self.classifier_model, indices)
        with self._autocast():
            embeddings = self.contrastive_forward(batch.images.contiguous(memory_format=self.memory_format))
        # Re-normalise in float32: under bf16/fp16 autocast the unit norm holds only to ~1e-2.
        features = batch.as_views(F.normalize(embeddings.float(), dim=1))
        if self.config.method == "exconb":
            return self.contrastive_loss(features, batch.labels, batch.background), batch
        return self.contrastive_loss(features, batch.labels), batch

    def _classifier_epoch(self, epoch: int) -> dict[str, Any]:
        self._reseed(epoch, 1)
        self.model.encoder.eval()  # frozen features, BatchNorm statistics untouched (SupContrast's main_linear)
        self.classifier.train()
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device)
        seen = 0
        steps = 0
        for step, (images, labels) in enumerate(self._single_batches(epoch)):
            with torch.no_grad(), self._autocast():
                features = self.model.encoder(images)
            logits = self.linear_forward(features.float())
            loss = F.cross_entropy(logits, labels)
            self._step(self.classifier_optimizer, loss, epoch, step)
            loss_sum += loss.detach()
            hits += (logits.argmax(1) == labels).sum()
            seen += labels.shape[0]
            steps += 1
        lr = self.classifier_optimizer.param_groups[0]["lr"]
        self.classifier_scheduler.step()
        total = self._sum(torch.tensor(float(seen), device=self.device))
        return {"classifier_loss": self._mean(loss_sum, steps), "train_top1": 100.0 * self._sum(hits) / max(total, 1.0),
                "classifier_lr": lr}

    def _ce_epoch(self, epoch: int) -> dict[str, Any]:
        return self._joint_epoch(epoch, self._ce_step)

    def _edda_epoch(self, epoch: int) -> dict[str, Any]:
        return self._joint_epoch(epoch, self._edda_step)

    def _cgc_epoch(self, epoch: int) -> dict[str, Any]:
        return self._joint_epoch(epoch, self._cgc_step)

    def _joint_epoch(self, epoch: int, step_loss: JointStep) -> dict[str, Any]:
        """One epoch of a joint encoder + classifier method; ``step_loss`` gives each step's loss.

        ``step_loss(images, labels, epoch) -> (loss, logits of the clean images, extra scalars)``; the extra
        scalars are averaged over steps (and ranks) into the epoch row.
        """
        self._reseed(epoch, 0)
        self.classifier_model.train()
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device)
        extras_sum: dict[str, Tensor] = {}
        seen = 0
        steps = 0
        for step, (images, labels) in enumerate(self._single_batches(epoch)):
            loss, logits, extras = step_loss(images, labels, epoch)
            self._step(self.encoder_optimizer, loss, epoch, step)
            loss_sum += loss.detach()
            hits += (logits.argmax(1) == labels).sum()
            for key, value in extras.items():
                extras_sum[key] = extras_sum.get(key, 0.0) + value.detach().float()
            seen += labels.shape[0]
            steps += 1
        lr = self.encoder_optimizer.param_groups[0]["lr"]
        self.encoder_scheduler.step()
        total = self._sum(torch.tensor(float(seen), device=self.device))
        row = {"encoder_loss": self._mean(loss_sum, steps), "train_top1": 100.0 * self._sum(hits) / max(total, 1.0),
               "lr": lr}
        row.update({key: self._mean(value, steps) for key, value in extras_sum.items()})
        return row

    def _ce_step(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        with self._autocast():
            logits = self.joint_forward(images)
        return F.cross_entropy(logits.float(), labels), logits, {}

    def _edda_step(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """CE on the batch plus EDDA copies of its first ``edda_ratio * B`` images, soft-target cross-entropy.

        The loader shuffles, so the first images are a random subset. Clean and occluded rows share one forward
        (one set of BatchNorm statistics), and every row weighs the same in the mean.
        """
        c = self.config
        n = int(round(c.edda_ratio * images.shape[0])) if epoch >= c.edda_start_epoch else 0
        if n == 0:
            return self._ce_step(images, labels, epoch)
        batch = self.edda_augment(images[:n], labels[:n], self.classifier_model)
        b = images.shape[0]
        inputs = torch.cat((images, batch.images)).contiguous(memory_format=self.memory_format)
        with self._autocast():
            logits = self.joint_forward(inputs).float()
        targets = torch.cat((F.one_hot(labels, logits.shape[1]).to(logits.dtype), batch.targets.to(logits.dtype)))
        loss = F.cross_entropy(logits, targets)
        rows = torch.tensor(float(batch.num_rows), device=self.device)
        return loss, logits[:b], {"edda_rows": rows, "clean_loss": F.cross_entropy(logits[:b].detach(), labels)}

    def _cgc_step(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """CE terms + ``cgc_lambda`` * CGC between the replayed-transformed map of each image and its view's map.

        The training view plays CGC's "original"; its augmented view is a replayable crop (scale 0.08-1) + flip.
        Both maps explain the class predicted on the original and keep their graph (second order). CE terms: the
        mean of the original's and the augmented view's CE, or only the original's with ``cgc_unlabeled``.
        """
        c = self.config
        params = self.cgc_transform.sample(images)
        augmented = self.cgc_transform.apply(images, params).contiguous(memory_format=self.memory_format)
        with self._autocast():
            maps, logits, predicted = cgc_heatmaps(self.joint_forward, self.cgc_layer, images)
            aug_maps, aug_logits, _ = cgc_heatmaps(self.joint_forward, self.cgc_layer, augmented, predicted)
        cgc = self.cgc_loss(self.cgc_transform.apply(maps.float(), params), aug_maps.float())
        ce = F.cross_entropy(logits.float(), labels)
        if not c.cgc_unlabeled:
            ce = 0.5 * (ce + F.cross_entropy(aug_logits.float(), labels))
        return ce + c.cgc_lambda * cgc, logits, {"ce_loss": ce.detach(), "cgc_loss": cgc.detach()}

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        """Top-1 of encoder + linear classifier on the validation split (summed over ranks)."""
        flags = [(m, m.training) for m in self.classifier_model.modules()]
        self.classifier_model.eval()
        hits = torch.zeros((), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        seen = torch.zeros((), device=self.device)
        try:
            for images, labels in self.data.val_batches(self.device, self.memory_format):
                with self._autocast():
                    logits = self.classifier_model(images).float()
                hits += (logits.argmax(1) == labels).sum()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum")
                seen += labels.shape[0]
        finally:
            for module, flag in flags:
                module.training = flag
        n = max(self._sum(seen), 1.0)
        return {"val_top1": 100.0 * self._sum(hits) / n, "val_loss": self._sum(loss_sum) / n}

    # -- steps and batches ----------------------------------------------------------------------------------
    def _step(self, optimizer: torch.optim.Optimizer, loss: Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step} of method {self.config.method!r}; "
                f"the last good checkpoint is kept at {self.out / 'last.pt'} (lower --lr or check the data)"
            )
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        if self._bar is not None and step % PROGRESS_EVERY == 0:
            self._bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)

    def _contrastive_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        batches = self.data.contrastive_batches(self.device, self.memory_format)
        yield from self._with_progress(batches, len(self.data.contrastive), f"epoch {epoch + 1} encoder")

    def _single_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        stage = self.config.method if self.config.is_joint else "classifier"
        batches = self.data.single_batches(self.device, self.memory_format)
        yield from self._with_progress(batches, len(self.data.single), f"epoch {epoch + 1} {stage}")

    def _with_progress(self, batches: Iterator[Any], total: int, desc: str) -> Iterator[Any]:
        """A tqdm bar in images/s over ``batches``; :meth:`_step` shows the loss on it every few steps."""
        if self.config.quiet or not self.ctx.is_main:
            yield from batches
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=desc, leave=False, unit="img", unit_scale=self.config.batch_size,
                  dynamic_ncols=True) as bar:
            self._bar = bar
            try:
                for batch in batches:
                    yield batch
                    bar.update(1)
            finally:
                self._bar = None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _sum(self, value: Tensor) -> float:
        """Sum over ranks, as a Python float (one host sync)."""
        if self.ctx.enabled:
            value = value.clone()
            torch.distributed.all_reduce(value)
        return float(value)

    def _mean(self, total: Tensor, steps: int) -> float:
        return self._sum(total) / max(steps * self.ctx.world_size, 1)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _state(self, next_epoch: int) -> dict[str, Any]:
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return {
            "exaug_version": __version__,
            "config": self.config.to_dict(),
            "epoch": next_epoch,
            "best_val": self.best_val,
            "model": self.model.state_dict(),
            "classifier": self.classifier.state_dict(),
            "optimizers": {"encoder": self.encoder_optimizer.state_dict(),
                           "classifier": self.classifier_optimizer.state_dict()},
            "schedulers": {"encoder": self.encoder_scheduler.state_dict(),
                           "classifier": self.classifier_scheduler.state_dict()},
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng, "numpy": np.random.get_state(),
                    "python": random.getstate()},
            "history": self.history,
        }

    def _save_checkpoints(self, epoch: int, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        val = row.get("val_top1")
        improved = val is not None and val > self.best_val
        if improved:
            self.best_val = val
        state = self._state(epoch + 1)
        atomic_save(state, self.out / "last.pt")
        if improved:
            atomic_save(state, self.out / "best.pt")

    def _resume(self) -> None:
        path = self.out / "last.pt"
        try:
            state = load_checkpoint(path, required_keys=CHECKPOINT_KEYS)
        except CheckpointError as err:
            raise CheckpointError(f"cannot --resume: {err}. Nothing was overwritten.") from err
        saved = state["config"]
        for key in ("method", "model", "dataset", "width", "head", "feat_dim", "epochs"):
            if saved.get(key) != getattr(self.config, key):
                raise CheckpointError(
                    f"cannot --resume: {str(path)!r} was trained with {key}={saved.get(key)!r}, "
                    f"this run asks for {key}={getattr(self.config, key)!r}"
                )
        self.model.load_state_dict(state["model"])
        self.classifier.load_state_dict(state["classifier"])
        self.encoder_optimizer.load_state_dict(state["optimizers"]["encoder"])
        self.classifier_optimizer.load_state_dict(state["optimizers"]["classifier"])
        self.encoder_scheduler.load_state_dict(state["schedulers"]["encoder"])
        self.classifier_scheduler.load_state_dict(state["schedulers"]["classifier"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.start_epoch = int(state["epoch"])
        self.best_val = float(state["best_val"])
        self.history = list(state.get("history", []))

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
        }

    def _summary(self, status: str, seconds: float) -> dict[str, Any]:
        vals = [r["val_top1"] for r in self.history if "val_top1" in r]
        return {
            "status": status,
            "method": self.config.method,
            "epochs_completed": len(self.history) and self.history[-1]["epoch"] + 1,
            "final_val_top1": vals[-1] if vals else None,
            "best_val_top1": max(vals) if vals else None,
            "seconds": seconds,
            "out": str(self.out),
            **self._resolved_settings(),
        }

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        tmp.replace(self.out / name)

    def _print_epoch(self, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        parts = [f"epoch {row['epoch'] + 1}/{self.total_epochs}"]
        for key in ("encoder_loss", "classifier_loss", "val_top1", "masked_correct", "background_per_batch",
                    "saliency_cache_hits", "cgc_loss"):
            if key in row:
                parts.append(f"{key} {row[key]:.4g}")
        parts.append(f"{row['epoch_time']:.1f}s")
        print("  ".join(parts), flush=True)


def describe_methods() -> dict[str, str]:
    """One line per training method (for ``exaug train --help``)."""
    return {
        "ce": "cross-entropy, encoder and classifier jointly",
        "supcon": "SupCon, Algorithm 1 (encoder epoch, then classifier epoch, every epoch)",
        "supcon_ori": "SupCon, classic two-stage (all encoder epochs, then all classifier epochs)",
        "excon": "ExCon: Algorithm 1 with explanation-masked positives",
        "exconb": "ExConB: ExCon with wrongly classified masks as background negatives",
        "edda": "cross-entropy with EDDA occlusions (salient -> lower-confidence target, non-salient -> label)",
        "cgc": "cross-entropy + contrastive Grad-CAM consistency across crops and flips",
    }

