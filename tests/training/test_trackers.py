"""Saliency grids as images and experiment trackers (``exaug train --logger wandb``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from exaug import ExplanationMaskAugment
from exaug.augment import SaliencyCache
from exaug.cli import main
from exaug.training import TrainConfig, Trainer
from exaug.training.logger import MetricsLogger, read_metrics
from exaug.training.saliency_grid import draw_saliency_grid, jet, saliency_grid_image


def test_jet_is_matlabs_jet():
    # MATLAB's jet: dark blue, blue, cyan, yellow, red, dark red at 0, 1/8, 3/8, 5/8, 7/8, 1.
    x = torch.tensor([0.0, 0.125, 0.375, 0.625, 0.875, 1.0]).view(-1, 1, 1, 1)
    expected = torch.tensor([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]])
    torch.testing.assert_close(jet(x)[:, :, 0, 0], expected)


def test_grid_image_matches_a_naive_loop():
    torch.manual_seed(0)
    n, h, w, p = 3, 5, 4, 2
    originals, masked = torch.rand(n, 3, h, w), torch.rand(n, 3, h, w)
    saliency, correct = torch.rand(n, 1, h, w), torch.tensor([True, False, True])
    image = saliency_grid_image(originals, saliency, masked, correct, alpha=0.25, padding=p)
    expected = torch.ones(3, 3 * (h + 2 * p), n * (w + 2 * p))
    for i in range(n):
        top, left = p, i * (w + 2 * p)
        colour = torch.tensor([0.1, 0.8, 0.1] if correct[i] else [0.9, 0.1, 0.1]).view(3, 1, 1)
        expected[:, 2 * (h + 2 * p):, left:left + w + 2 * p] = colour  # the masked view's frame
        for row, cell in enumerate((originals[i], 0.75 * originals[i] + 0.25 * jet(saliency[i:i + 1])[0],
                                    masked[i])):
            y = row * (h + 2 * p) + top
            expected[:, y:y + h, left + p:left + p + w] = cell
    torch.testing.assert_close(image, expected)
    with pytest.raises(ValueError, match="saliency"):
        saliency_grid_image(originals, saliency[:, :, :2], masked, correct)


def _tiny_classifier() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_draw_saliency_grid_shows_the_augments_masks_and_changes_nothing():
    torch.manual_seed(0)
    model = _tiny_classifier()
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    cache = SaliencyCache(10, 8, refresh_every=3)
    augment = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "1"}, fill="noise", cache=cache)
    cache_before = {k: v.clone() for k, v in cache.state_dict().items() if torch.is_tensor(v)}
    rng_before = torch.get_rng_state()
    grid = draw_saliency_grid(augment, model, images, labels, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert cache_before and all(torch.equal(v, cache.state_dict()[k]) for k, v in cache_before.items())
    assert (cache.hits, cache.misses) == (0, 0)
    # The reference: the same augment without a cache, drawn directly with the grid's fixed noise.
    reference = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "1"}, fill="noise")
    params = reference.draw(images, labels, model, generator=torch.Generator().manual_seed(0))
    expected = saliency_grid_image(images, params.saliency, params.masked, params.correct)
    torch.testing.assert_close(grid, expected)


def test_metrics_logger_writes_images(tmp_path):
    logger = MetricsLogger(tmp_path)
    assert logger.tracker is None and not logger.wants_images
    logger.log({"epoch": 3, "loss": 1.0}, {"saliency_grid": torch.rand(3, 6, 9)})
    logger.close()
    with Image.open(tmp_path / "images" / "saliency_grid_epoch0003.png") as png:
        assert png.size == (9, 6)
    assert read_metrics(tmp_path) == [{"epoch": 3, "loss": 1.0}]
    with pytest.raises(ValueError, match="logger"):
        TrainConfig(logger="mlflow")


TRAIN = ["--method", "exconb", "--dataset", "synthetic", "--model", "resnet18", "--width", "0.0625", "--feat-dim",
         "16", "--epochs", "2", "--batch-size", "16", "--train-samples", "32", "--eval-samples", "16",
         "--exp-start-epoch", "1", "--device", "cpu", "--quiet"]


def _numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch_time"}


def test_train_logger_wandb_offline(tmp_path, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logged: list[dict] = []
    original = wandb.Run.log

    def spy(self, data, *args, **kwargs):
        logged.append(dict(data))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log", spy)
    out = tmp_path / "tracked"
    assert main(["train", *TRAIN, "--logger", "wandb", "--out", str(out)]) == 0
    rows = read_metrics(out)
    # The same numbers per epoch as metrics.jsonl ...
    metric_rows = [d for d in logged if "saliency_grid" not in d]
    assert [_numbers(d) for d in metric_rows] == [_numbers(r) for r in rows]
    # ... and a saliency grid on the epoch that explains (epoch 1), none before.
    grids = [d for d in logged if "saliency_grid" in d]
    assert [d["epoch"] for d in grids] == [1]
    assert isinstance(grids[0]["saliency_grid"], wandb.Image)
    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1 and list(run_dirs[0].glob("run-*.wandb"))
    assert list(run_dirs[0].glob("files/media/images/saliency_grid_*.png"))
    assert sorted(p.name for p in (out / "images").iterdir()) == ["saliency_grid_epoch0001.png"]
    run_id = (out / "wandb_run_id").read_text().strip()
    assert run_dirs[0].name.endswith(run_id)
    assert json.loads((out / "config.json").read_text())["logger"] == "wandb"

    # Training is unaffected by the tracker (the grid forks the RNGs and bypasses the cache).
    plain = tmp_path / "plain"
    assert main(["train", *TRAIN, "--out", str(plain)]) == 0
    assert [_numbers(r) for r in read_metrics(plain)] == [_numbers(r) for r in rows]
    assert not (plain / "images").exists() and not (plain / "wandb_run_id").exists()

    # --resume continues the same W&B run.
    config = json.loads((out / "config.json").read_text())
    config.pop("resolved"), config.pop("changes")  # records the trainer writes next to the options
    config.update(epochs=2, resume=True)
    (out / "summary.json").unlink()
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.fit()
    assert (out / "wandb_run_id").read_text().strip() == run_id
    capsys.readouterr()
