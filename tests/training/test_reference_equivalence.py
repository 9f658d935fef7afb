"""The plugin trainer against an independent, hand-written loop of each method family (bit for bit).

Each reference below re-implements one epoch from the building blocks only (loaders, networks, losses, augment),
without the trainer or the method classes: the same seeds per stage, plain SGD, running sums on the device. The
trainer's logged metrics and final weights must be *equal*, not close.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exaug.augment import ExplanationMaskAugment
from exaug.losses import ExConBLoss, SupConLoss
from exaug.models import Classifier, build_networks, default_explainer_layer
from exaug.training import Trainer
from exaug.training.distributed import setup_distributed
from exaug.training.loaders import build_run_data
from exaug.training.schedule import seed_everything

CPU, FORMAT = torch.device("cpu"), torch.contiguous_format


def _reseed(data, seed: int, epoch: int, stage: int) -> None:
    # The trainer's documented per-stage seed (seed, epoch, stage, rank 0), written out independently.
    stage_seed = ((seed * 1_000_003 + epoch) * 7 + stage) * 1009
    seed_everything(stage_seed)
    data.set_epoch(epoch, stage_seed)


def _setup(config):
    seed_everything(config.seed)
    data = build_run_data(config, setup_distributed("cpu"))
    model, classifier = build_networks(config.model, num_classes=data.num_classes, image_size=data.image_size,
                                       width=config.width, head=config.head, feat_dim=config.feat_dim)
    return data, model, classifier


def _sgd_step(optimizer, loss) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def _validate(data, net) -> dict[str, float]:
    net.eval()
    hits, loss_sum, seen = torch.zeros(()), torch.zeros(()), torch.zeros(())
    for images, labels in data.val_batches(CPU, FORMAT):
        logits = net(images).float()
        hits += (logits.argmax(1) == labels).sum()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        seen += labels.shape[0]
    return {"val_top1": 100.0 * float(hits) / float(seen), "val_loss": float(loss_sum) / float(seen)}


def _reference_algorithm1(config) -> tuple[dict, dict]:
    """Epoch 0 of supcon / exconb: encoder epoch, classifier epoch on frozen features, validation."""
    data, model, classifier = _setup(config)
    net = Classifier(model.encoder, classifier)
    encoder_opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                  weight_decay=config.weight_decay)
    classifier_opt = torch.optim.SGD(classifier.parameters(), lr=config.classifier_lr, momentum=config.momentum)
    exconb = config.method == "exconb"
    loss_fn = ExConBLoss(config.temperature, config.base_temperature) if exconb else \
        SupConLoss(config.temperature, base_temperature=config.base_temperature)
    layer = default_explainer_layer(config.model, data.image_size)
    augment = ExplanationMaskAugment(config.explainer, mode="exconb", threshold=config.mask_threshold,
                                     explainer_options={"target_layer": layer}, enabled=exconb)
    row: dict = {}
    _reseed(data, config.seed, 0, 0)
    model.train()
    total, correct, steps = torch.zeros(()), torch.zeros(()), 0
    for standard, view1, view2, labels, _ in data.contrastive_batches(CPU, FORMAT):
        batch = augment(standard, (view1, view2), labels, net)
        features = batch.as_views(F.normalize(model(batch.images).float(), dim=1))
        loss = loss_fn(features, batch.labels, batch.background) if exconb else loss_fn(features, batch.labels)
        _sgd_step(encoder_opt, loss)
        total += loss.detach()
        if exconb:
            correct += batch.correct.sum()
        steps += 1
    row["encoder_loss"] = float(total) / steps
    if exconb:
        row["masked_correct"] = float(correct) / (steps * config.batch_size)
    _reseed(data, config.seed, 0, 1)
    model.encoder.eval()
    classifier.train()
    total, hits, steps = torch.zeros(()), torch.zeros(()), 0
    for images, labels in data.single_batches(CPU, FORMAT):
        with torch.no_grad():
            features = model.encoder(images)
        logits = classifier(features.float())
        loss = F.cross_entropy(logits, labels)
        _sgd_step(classifier_opt, loss)
        total += loss.detach()
        hits += (logits.argmax(1) == labels).sum()
        steps += 1
    row.update(classifier_loss=float(total) / steps, train_top1=100.0 * float(hits) / (steps * config.batch_size))
    row.update(_validate(data, net))
    return row, {**model.state_dict(), **{f"classifier.{k}": v for k, v in classifier.state_dict().items()}}


def _reference_ce(config) -> tuple[dict, dict]:
    """Epoch 0 of ce: encoder + classifier trained jointly by cross-entropy, then validation."""
    data, model, classifier = _setup(config)
    net = Classifier(model.encoder, classifier)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    _reseed(data, config.seed, 0, 0)
    net.train()
    total, hits, steps = torch.zeros(()), torch.zeros(()), 0
    for images, labels in data.single_batches(CPU, FORMAT):
        logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
        _sgd_step(optimizer, loss)
        total += loss.detach()
        hits += (logits.argmax(1) == labels).sum()
        steps += 1
    row = {"encoder_loss": float(total) / steps, "train_top1": 100.0 * float(hits) / (steps * config.batch_size)}
    row.update(_validate(data, net))
    return row, {**model.state_dict(), **{f"classifier.{k}": v for k, v in classifier.state_dict().items()}}


@pytest.mark.parametrize("method, reference", [
    ("ce", _reference_ce), ("supcon", _reference_algorithm1), ("exconb", _reference_algorithm1),
])
def test_first_epoch_equals_an_independent_loop_bit_for_bit(method, reference, tiny_config):
    config = tiny_config(method=method, epochs=1, exp_start_epoch=0)
    trainer = Trainer(config)
    trainer.fit()
    row = trainer.history[0]
    want, weights = reference(config)
    for key, value in want.items():
        assert row[key] == value, key  # exact: same operations in the same order
    got = {**trainer.model.state_dict(), **{f"classifier.{k}": v for k, v in trainer.classifier.state_dict().items()}}
    assert got.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(got[name], tensor), name
