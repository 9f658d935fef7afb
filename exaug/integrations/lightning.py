"""PyTorch Lightning: SupCon / ExCon / ExConB as a ``LightningModule``, and a callback that logs saliency grids.

:class:`ExConModule` trains exaug's networks (:class:`~exaug.models.SupConModel` + :class:`~exaug.models.
LinearClassifier`) with :class:`~exaug.ExplanationMaskAugment` and :class:`~exaug.losses.SupConLoss` /
:class:`~exaug.losses.ExConBLoss`: the encoder step of each batch is the reference trainer's
(:meth:`exaug.training.methods.ContrastiveMethod.contrastive_step_loss`, same numbers on the same batch). The
linear classifier keeps Algorithm 1's separation: its own SGD optimiser, trained on *detached* encoder features
(encoder in eval mode, as in Algorithm 1's classifier epoch), but one classifier step per batch right after the
encoder step instead of a separate classifier epoch: one pass over the data per epoch. Both optimisers follow
exaug's cosine schedule per epoch (manual optimisation).

Under DDP the contrastive loss gathers the embeddings of every rank (``gather_distributed`` is switched on in
:meth:`ExConModule.setup` when ``trainer.world_size > 1``); since each of the two backward passes of a step uses
only part of the parameters, use ``strategy="ddp_find_unused_parameters_true"``.

Lightning is an optional extra: ``pip install "exaug[lightning]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from ..augment import AugmentedBatch, ExplanationMaskAugment
from ..losses import ExConBLoss, SupConLoss
from ..models import Classifier, LinearClassifier, SupConModel
from ..training.saliency_grid import draw_saliency_grid, save_png, to_uint8_hwc
from ..training.schedule import cosine_factor

__all__ = ["ExConModule", "SaliencyGridCallback"]

Method = Literal["supcon", "excon", "exconb"]
METHODS: tuple[str, ...] = ("supcon", "excon", "exconb")


class ExConModule(pl.LightningModule):
    """SupCon / ExCon / ExConB with a co-trained linear classifier (Algorithm 1 per batch).

    Batches are what a dataset with :class:`~exaug.transforms.ExConTransform` yields: ``((standard, view1,
    view2), labels)``, or ``((standard, view1, view2), labels, indices)`` (an :class:`~exaug.data.IndexedDataset`,
    needed when the augment has a :class:`~exaug.augment.SaliencyCache`). Validation batches are
    ``(images, labels)``. Logged per epoch: ``encoder_loss``, ``classifier_loss``, ``train_top1``, ``lr``,
    ``classifier_lr``, while explaining ``masked_correct``, ``kept_area``, ``background_per_batch``, and
    ``val_top1``, ``val_loss``.

    Example:
        >>> import torch
        >>> from exaug.models import build_networks
        >>> model, classifier = build_networks("resnet18", num_classes=3, image_size=16, width=0.0625, feat_dim=8)
        >>> module = ExConModule(model, classifier, "exconb", epochs=1, explainer_options={"target_layer":
        ...                      "encoder.layer2"})
        >>> standard, view1, view2 = torch.randn(3, 4, 3, 16, 16)
        >>> loss, routed = module.contrastive_step(standard, view1, view2, torch.tensor([0, 1, 2, 0]))
        >>> loss.dim(), routed.images.shape[0] >= 8
        (0, True)

    Args:
        model: encoder + projection head.
        classifier: linear classifier on the encoder's features (explanations use encoder + classifier).
        method: ``"supcon"`` (two random views), ``"excon"`` or ``"exconb"`` (explanation-masked views).
        epochs: length of the cosine schedules (default: the Lightning trainer's ``max_epochs``).
        lr: the encoder's SGD learning rate (its start value).
        momentum: SGD momentum of both optimisers.
        weight_decay: the encoder's SGD weight decay.
        classifier_lr: the classifier's SGD (same momentum, no weight decay, as the reference trainer).
        lr_min_factor: the cosine schedules end at ``lr * lr_min_factor``.
        warmup_epochs: linear warm-up of the encoder's learning rate.
        temperature: the contrastive temperature ``t``.
        base_temperature: the loss is scaled by ``t / base_temperature`` (SupContrast).
        background_copies: ExConB: background rows count in every view (``"all"``) or once (``"one"``).
        exp_start_epoch: first epoch (0-based) that uses explanation masks.
        augment: the augment to use (default: one built from ``explainer`` / ``explainer_options`` with the
            paper's masking rule, mode following ``method``).
        explainer: saliency backend of the default augment (a registered name).
        explainer_options: options of that backend, e.g. ``{"target_layer": "encoder.layer2"}``.

    Shape:
        ``standard``, ``view1``, ``view2``: ``(B, C, H, W)``; ``labels``, ``indices``: ``(B,)``.
    """

    def __init__(
        self,
        model: SupConModel,
        classifier: LinearClassifier,
        method: Method = "exconb",
        *,
        epochs: int | None = None,
        lr: float = 0.5,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        classifier_lr: float = 0.1,
        lr_min_factor: float = 1e-3,
        warmup_epochs: int = 0,
        temperature: float = 0.1,
        base_temperature: float = 0.07,
        background_copies: str = "all",
        exp_start_epoch: int = 0,
        augment: ExplanationMaskAugment | None = None,
        explainer: str = "gradcam",
        explainer_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs must be a positive int or None, got {epochs!r}")
        if exp_start_epoch < 0:
            raise ValueError(f"exp_start_epoch must be >= 0, got {exp_start_epoch}")
        if augment is not None and augment.mode != ("exconb" if method == "exconb" else "excon"):
            raise ValueError(f"augment has mode {augment.mode!r}, which does not match method {method!r}")
        self.save_hyperparameters(ignore=["model", "classifier", "augment"])
        # Two optimisers and two backward passes per batch.
        self.automatic_optimization = False
        self.method = method
        self.model = model
        self.classifier = classifier
        # Not registered as a submodule: it only shares model.encoder and classifier (no duplicate state_dict keys).
        object.__setattr__(self, "classifier_model", Classifier(model.encoder, classifier))
        if method == "exconb":
            self.contrastive_loss: torch.nn.Module = ExConBLoss(temperature, base_temperature,
                                                                background_copies=background_copies)
        else:
            self.contrastive_loss = SupConLoss(temperature, base_temperature=base_temperature)
        self.augment = augment if augment is not None else ExplanationMaskAugment(
            explainer, mode="exconb" if method == "exconb" else "excon", explainer_options=explainer_options)
        self.augment.enabled = False  # switched per epoch in on_train_epoch_start

    # -- Lightning hooks --------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """DDP-correct loss: contrast against every rank's embeddings when there is more than one rank."""
        self.contrastive_loss.gather_distributed = self.trainer.world_size > 1

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        hp = self.hparams
        epochs = hp.epochs or self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError("ExConModule needs epochs=... (or Trainer(max_epochs=...)) for its cosine schedules")
        encoder_optimizer = torch.optim.SGD(self.model.parameters(), lr=hp.lr, momentum=hp.momentum,
                                            weight_decay=hp.weight_decay)
        classifier_optimizer = torch.optim.SGD(self.classifier.parameters(), lr=hp.classifier_lr,
                                               momentum=hp.momentum)
        schedulers = [
            torch.optim.lr_scheduler.LambdaLR(
                encoder_optimizer, lambda e: cosine_factor(e, epochs, hp.warmup_epochs, hp.lr_min_factor)),
            torch.optim.lr_scheduler.LambdaLR(
                classifier_optimizer, lambda e: cosine_factor(e, epochs, 0, hp.lr_min_factor)),
        ]
        return [encoder_optimizer, classifier_optimizer], schedulers

    def explains(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` uses explanation masks."""
        return self.method != "supcon" and epoch >= self.hparams.exp_start_epoch

    def on_train_epoch_start(self) -> None:
        self.augment.enabled = self.explains(self.current_epoch)
        if self.augment.cache is not None:
            self.augment.cache.set_epoch(self.current_epoch)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Tensor:
        standard, view1, view2, labels, indices = self.unpack_batch(batch)
        encoder_optimizer, classifier_optimizer = self.optimizers()  # type: ignore[misc]
        loss, routed = self.contrastive_step(standard, view1, view2, labels, indices)
        encoder_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        encoder_optimizer.step()

        classifier_loss, logits = self.classifier_step(view2, labels)
        classifier_optimizer.zero_grad(set_to_none=True)
        self.manual_backward(classifier_loss)
        classifier_optimizer.step()

        size = labels.shape[0]
        log = {"encoder_loss": loss.detach(), "classifier_loss": classifier_loss.detach(),
               "train_top1": 100.0 * (logits.argmax(1) == labels).float().mean()}
        if routed.correct is not None and routed.keep is not None:
            log.update(masked_correct=routed.correct.float().mean(),
                       kept_area=routed.keep.float().mean(),
                       background_per_batch=routed.background.sum().float())
        # Epoch means over all ranks, reduced once at the epoch's end (no per-step host sync).
        self.log_dict(log, on_step=False, on_epoch=True, sync_dist=True, batch_size=size)
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        encoder_optimizer, classifier_optimizer = self.optimizers()  # type: ignore[misc]
        self.log_dict({"lr": encoder_optimizer.param_groups[0]["lr"],
                       "classifier_lr": classifier_optimizer.param_groups[0]["lr"]}, sync_dist=True)
        for scheduler in self.lr_schedulers():  # type: ignore[union-attr]
            scheduler.step()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        logits = self.classifier_model(images).float()
        self.log_dict({"val_top1": 100.0 * (logits.argmax(1) == labels).float().mean(),
                       "val_loss": F.cross_entropy(logits, labels)},
                      on_epoch=True, sync_dist=True, batch_size=labels.shape[0])

    # -- the steps ---------------------------------------------------------------------------------------------
    @staticmethod
    def unpack_batch(batch: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``((standard, view1, view2), labels[, indices])`` -> ``(standard, view1, view2, labels, indices)``."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3) or len(batch[0]) != 3:
            raise ValueError("a training batch must be ((standard, view1, view2), labels) or "
                             "((standard, view1, view2), labels, indices): use exaug.transforms.ExConTransform")
        (standard, view1, view2), labels = batch[0], batch[1]
        return standard, view1, view2, labels, batch[2] if len(batch) == 3 else None

    def contrastive_step(
        self, standard: Tensor, view1: Tensor, view2: Tensor, labels: Tensor, indices: Tensor | None = None
    ) -> tuple[Tensor, AugmentedBatch]:
        """The encoder loss of one batch (augment, projection, SupCon / ExConB loss), as the reference trainer.

        Returns:
            ``(loss, routed batch)``.

        Shape:
            standard, view1, view2: ``(B, C, H, W)``; labels, indices: ``(B,)``; the loss is a scalar.
        """
        routed = self.augment(standard, (view1, view2), labels, self.classifier_model, indices)
        embeddings = self.model(routed.images)
        # Re-normalised in float32: under mixed precision the unit norm holds only to ~1e-2.
        features = routed.as_views(F.normalize(embeddings.float(), dim=1))
        if self.method == "exconb":
            return self.contrastive_loss(features, routed.labels, routed.background), routed
        return self.contrastive_loss(features, routed.labels), routed

    def classifier_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy of the classifier on detached features of ``images`` (encoder in eval mode, its
        BatchNorm statistics untouched, as in Algorithm 1's classifier epoch); returns ``(loss, logits)``.

        Shape:
            images: ``(B, C, H, W)``; labels: ``(B,)``; logits: ``(B, num_classes)``.
        """
        encoder = self.model.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                features = encoder(images)
        finally:
            encoder.train(was_training)
        logits = self.classifier(features.float())
        return F.cross_entropy(logits, labels), logits


class SaliencyGridCallback(pl.Callback):
    """Log the saliency grid of :class:`ExConModule` every ``every_n_epochs`` training epochs.

    The grid (:func:`~exaug.training.saliency_grid.saliency_grid_image`: originals, saliency overlays and masked
    views framed green when classified correctly, red otherwise) shows the first ``num_images`` standard views of
    the first training batch, the same images every time. It is saved as ``<log_dir>/saliency/
    epoch<k>.png`` and sent to every logger that takes images: ``logger.experiment.add_image`` (TensorBoard) or
    ``logger.log_image`` (Weights & Biases); a CSV logger gets the PNG files only. Drawing it changes nothing
    in training (no cache update, forked random generators).

    Args:
        every_n_epochs: log after epochs ``n - 1, 2n - 1, ...``.
        num_images: columns of the grid.
        mean: the per-channel mean of the normalisation, undone for display (default: min-max per image).
        std: the matching per-channel standard deviations.

    Attributes:
        paths: the PNG files written so far.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        for name, value in (("every_n_epochs", every_n_epochs), ("num_images", num_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.mean, self.std = mean, std
        self.paths: list[Path] = []
        self._images: tuple[Tensor, Tensor] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._images is None:
            standard, _, _, labels, _ = ExConModule.unpack_batch(batch)
            self._images = (standard[: self.num_images].detach().clone(), labels[: self.num_images].clone())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs or self._images is None:
            return
        if not isinstance(pl_module, ExConModule):
            raise TypeError(f"SaliencyGridCallback needs an ExConModule, got {type(pl_module).__name__}")
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective call: every rank makes it
        if not trainer.is_global_zero:
            return
        images, labels = (t.to(pl_module.device) for t in self._images)
        with torch.enable_grad():
            grid = draw_saliency_grid(pl_module.augment, pl_module.classifier_model, images, labels,
                                      self.mean, self.std)
        self.paths.append(save_png(grid, log_dir / "saliency" / f"epoch{epoch:04d}.png"))
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if callable(getattr(experiment, "add_image", None)):
                experiment.add_image("saliency_grid", grid, global_step=epoch)
            elif callable(getattr(logger, "log_image", None)):
                logger.log_image("saliency_grid", [to_uint8_hwc(grid).numpy()], step=trainer.global_step)
