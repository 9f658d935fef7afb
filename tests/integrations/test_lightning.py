"""``exaug.integrations.lightning``: the LightningModule matches the reference trainer's step; the callback logs."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

pl = pytest.importorskip("lightning.pytorch")

from exaug.data import SyntheticShapes  # noqa: E402
from exaug.integrations.lightning import ExConModule, SaliencyGridCallback  # noqa: E402
from exaug.models import build_networks  # noqa: E402
from exaug.training import TrainConfig, Trainer  # noqa: E402
from exaug.transforms import ExConTransform, standard_view, supcon_random_view  # noqa: E402

TINY = dict(dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=2, batch_size=16,
            train_samples=32, eval_samples=16, quiet=True, device="cpu", seed=5, exp_start_epoch=0)


@pytest.mark.parametrize("method", ["exconb", "excon", "supcon"])
def test_loss_and_gradients_match_the_reference_trainer_step(method, tmp_path):
    config = TrainConfig(method=method, out=str(tmp_path / "run"), **TINY)
    trainer = Trainer(config)
    module = ExConModule(copy.deepcopy(trainer.model), copy.deepcopy(trainer.classifier), method,
                         epochs=config.epochs, temperature=config.temperature,
                         base_temperature=config.base_temperature, explainer=config.explainer,
                         explainer_options=trainer.explainer_options)
    module.augment.enabled = module.explains(0)
    trainer.method.augment.enabled = trainer.method.explains(0)
    trainer.reseed(0, 0)
    standard, view1, view2, labels, indices = next(iter(trainer.contrastive_batches(0)))
    trainer.model.train()
    module.train()

    expected, reference_batch = trainer.method.contrastive_step_loss(standard, view1, view2, labels, indices)
    loss, routed = module.contrastive_step(standard, view1, view2, labels, indices)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    assert torch.equal(routed.images, reference_batch.images) and torch.equal(routed.labels, reference_batch.labels)
    if method != "supcon":
        assert routed.correct is not None and torch.equal(routed.correct, reference_batch.correct)
    expected.backward()
    loss.backward()
    for (name, ours), theirs in zip(module.model.named_parameters(), trainer.model.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7, msg=name)
    trainer.close()


class ImageLogger(pl.loggers.CSVLogger):
    """A CSV logger whose experiment also takes images, like TensorBoard's ``SummaryWriter``."""

    images: list[tuple[str, tuple[int, ...], int]] = []

    @property
    def experiment(self):  # type: ignore[override]
        writer = super().experiment
        writer.add_image = lambda tag, image, global_step: self.images.append(  # type: ignore[attr-defined]
            (tag, tuple(image.shape), global_step))
        return writer


def _loaders(samples: int = 32, batch: int = 16) -> tuple[DataLoader, DataLoader]:
    mean, std = (0.5,) * 3, (0.25,) * 3
    train = SyntheticShapes("train", samples, image_size=16,
                            transform=ExConTransform(supcon_random_view(16, mean, std), standard_view(16, mean, std)))
    val = SyntheticShapes("test", samples // 2, image_size=16, transform=standard_view(16, mean, std))
    return DataLoader(train, batch_size=batch, shuffle=True, drop_last=True), DataLoader(val, batch_size=batch)


def test_fit_logs_metrics_and_the_callback_writes_grids(tmp_path):
    torch.manual_seed(0)
    train, val = _loaders()
    model, classifier = build_networks("resnet18", num_classes=train.dataset.num_classes, image_size=16,
                                       width=0.0625, feat_dim=8)
    module = ExConModule(model, classifier, "exconb", exp_start_epoch=1, lr=0.05,
                         explainer_options={"target_layer": "encoder.layer2"})
    callback = SaliencyGridCallback(every_n_epochs=1, num_images=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    logger = ImageLogger(str(tmp_path), name="lightning")
    ImageLogger.images = []
    fit = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    fit.fit(module, train, val)
    assert module.contrastive_loss.gather_distributed is False  # one process
    # One grid per epoch: PNG files under the log dir and the logger's add_image.
    assert [p.name for p in callback.paths] == ["epoch0000.png", "epoch0001.png"]
    assert all(p.is_file() and p.parent == Path(logger.log_dir) / "saliency" for p in callback.paths)
    assert [(tag, step) for tag, _, step in ImageLogger.images] == [("saliency_grid", 0), ("saliency_grid", 1)]
    assert ImageLogger.images[0][1] == (3, 3 * (16 + 4), 4 * (16 + 4))
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    epoch_rows = [r for r in rows if r.get("encoder_loss")]
    assert len(epoch_rows) == 2
    # Explanations start at epoch 1: routing statistics appear only then.
    assert not epoch_rows[0].get("masked_correct") and epoch_rows[1].get("masked_correct")
    assert sum(bool(r.get("val_top1")) for r in rows) == 2
    # The cosine schedule: the encoder lr went down from its start value.
    lrs = [float(r["lr"]) for r in rows if r.get("lr")]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] < lrs[0]


def test_argument_errors():
    model, classifier = build_networks("resnet18", num_classes=3, image_size=16, width=0.0625, feat_dim=8)
    with pytest.raises(ValueError, match="method"):
        ExConModule(model, classifier, "simclr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        ExConModule(model, classifier, epochs=0)
    with pytest.raises(ValueError, match="training batch"):
        ExConModule.unpack_batch((torch.zeros(2, 3, 8, 8), torch.zeros(2)))
    with pytest.raises(ValueError, match="every_n_epochs"):
        SaliencyGridCallback(every_n_epochs=0)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_gathers_across_ranks_and_keeps_them_in_sync(tmp_path):
    """Two CPU processes (gloo): the loss gathers, and both ranks end with the same parameters."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_fit.py")), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert all(r["gather"] is True and r["world_size"] == 2 for r in ranks)
    assert ranks[0]["params"] == ranks[1]["params"]
