from __future__ import annotations

import json

import pytest
import torch

from exaug.training import METHODS, Trainer, TrainingDiverged
from exaug.training.logger import read_metrics
from exaug.utils.checkpoint import CheckpointError

TIMING_KEYS = {"epoch_time"}


def comparable(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_writes_its_folder(method, tiny_config):
    config = tiny_config(method=method, classifier_epochs=1)
    trainer = Trainer(config)
    summary = trainer.fit()
    out = trainer.out
    assert summary["status"] == "finished"
    total = 3 if method == "supcon_ori" else 2
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == list(range(total))
    assert (out / "metrics.csv").read_text().count("\n") == total + 1
    for name in ("config.json", "summary.json", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["resolved"]["num_classes"] == 10
    assert 0.0 <= summary["best_val_top1"] <= 100.0
    for row in rows:
        assert all(v == v for v in row.values() if isinstance(v, float)), f"NaN in {row}"
    if method in ("excon", "exconb"):
        assert rows[0]["explanations"] is False and rows[1]["explanations"] is True
        assert 0.0 <= rows[1]["masked_correct"] <= 1.0 and 0.0 < rows[1]["kept_area"] < 1.0
        assert (rows[1]["background_per_batch"] > 0) == (method == "exconb" and rows[1]["masked_correct"] < 1)
    if method == "supcon_ori":
        assert "val_top1" not in rows[0] and "val_top1" in rows[-1]


def test_resume_after_interrupt_matches_uninterrupted_run(tiny_config):
    """Kill after epoch 1 of 3 (Ctrl-C), resume, and get the same metrics as a run that was never stopped."""
    full = Trainer(tiny_config(method="exconb", epochs=3))
    full.fit()

    def interrupt(trainer, row):
        if row["epoch"] == 0:
            raise KeyboardInterrupt

    config = tiny_config(method="exconb", epochs=3)
    first = Trainer(config, callbacks=[interrupt])
    summary = first.fit()
    assert summary["status"] == "interrupted" and (first.out / "interrupted.pt").is_file()
    assert [r["epoch"] for r in read_metrics(first.out)] == [0]
    resumed = Trainer(type(config)(**{**config.to_dict(), "resume": True}))
    assert resumed.fit()["status"] == "finished"
    got, want = comparable(read_metrics(resumed.out)), comparable(read_metrics(full.out))
    assert [r["epoch"] for r in got] == [0, 1, 2]
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in g:
            if isinstance(g[key], float):
                assert g[key] == pytest.approx(w[key], rel=1e-5, abs=1e-6), key
            else:
                assert g[key] == w[key], key
    a = torch.load(resumed.out / "last.pt", weights_only=False)["model"]
    b = torch.load(full.out / "last.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_resume_with_a_saliency_cache_is_identical_to_an_uninterrupted_run(tiny_config):
    """refresh 3: maps of epoch 0 serve epochs 1-2. A run stopped after epoch 0 must serve the same maps when
    resumed (the cache is in last.pt); recomputing them with the epoch-1 model would change the masks."""
    options = dict(method="excon", epochs=4, exp_start_epoch=0, saliency_refresh_epochs=3)
    full = Trainer(tiny_config(**options))
    full.fit()

    def interrupt(trainer, row):
        if row["epoch"] == 0:
            raise KeyboardInterrupt

    config = tiny_config(**options)
    assert Trainer(config, callbacks=[interrupt]).fit()["status"] == "interrupted"
    state = torch.load(Trainer(config).out / "last.pt", weights_only=False)
    assert state["saliency_cache"]["epoch_computed"].eq(0).all()  # every map computed at epoch 0 is saved
    resumed = Trainer(type(config)(**{**config.to_dict(), "resume": True}))
    resumed.fit()
    got, want = comparable(read_metrics(resumed.out)), comparable(read_metrics(full.out))
    assert [r["saliency_cache_hits"] for r in got] == [r["saliency_cache_hits"] for r in want]
    assert got == want


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tiny_config):
    trainer = Trainer(tiny_config(method="supcon", epochs=2))
    real_loss = trainer.method.contrastive_loss
    calls = {"n": 0}

    def poisoned(features, labels):
        calls["n"] += 1
        loss = real_loss(features, labels)
        return loss * float("nan") if trainer._current_epoch == 1 and calls["n"] > 3 else loss

    trainer.method.contrastive_loss = poisoned
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 0"):
        trainer.fit()
    state = torch.load(trainer.out / "last.pt", weights_only=False)
    assert state["epoch"] == 1  # the checkpoint of the last completed epoch is intact
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_corrupt_checkpoint_on_resume_is_a_clear_error_and_nothing_is_overwritten(tiny_config):
    config = tiny_config(method="supcon", epochs=1)
    Trainer(config).fit()
    last = Trainer(config).out / "last.pt"
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable.*Nothing was overwritten"):
        Trainer(type(config)(**{**config.to_dict(), "resume": True})).fit()
    assert last.read_bytes() == b"not a checkpoint"


def test_existing_run_is_not_overwritten_without_resume(tiny_config):
    config = tiny_config(method="supcon", epochs=1)
    Trainer(config).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config).fit()


def test_resume_refuses_a_different_run(tiny_config):
    config = tiny_config(method="supcon", epochs=1)
    Trainer(config).fit()
    other = type(config)(**{**config.to_dict(), "method": "excon", "resume": True})
    with pytest.raises(CheckpointError, match="method='supcon'"):
        Trainer(other).fit()


def test_views_on_device_and_validation_split(tiny_config):
    trainer = Trainer(tiny_config(method="exconb", epochs=2, views_on_device=True, val_fraction=0.25,
                                  train_samples=None, eval_samples=None, keep_fraction=0.3))
    # synthetic train split of 5000 with a 25% stratified validation split
    assert (trainer.data.train_size, trainer.data.val_size) == (3750, 1250)
    batches = trainer.data.contrastive_batches(torch.device("cpu"), torch.contiguous_format)
    standard, view1, view2, labels, indices = next(batches)
    assert standard.shape == view1.shape == view2.shape == (16, 3, 32, 32)
    assert not torch.equal(view1, view2)
    # indices are positions in the training split and point at the batch's own images
    assert indices.dtype == torch.int64 and indices.shape == (16,) and len(set(indices.tolist())) == 16
    assert 0 <= int(indices.min()) and int(indices.max()) < trainer.data.train_size
    pixels, label, index = trainer.data.contrastive.dataset[int(indices[3])]
    assert (index, label) == (int(indices[3]), int(labels[3]))
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (trainer.data.mean, trainer.data.std))
    torch.testing.assert_close(standard[3], (pixels - mean) / std)


def test_batch_larger_than_data_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(tiny_config(batch_size=64, train_samples=48))


@pytest.mark.parametrize("options", [{"amp": "bf16"}, {"channels_last": True}, {"workers": 1}])
def test_speed_options_train(options, tiny_config):
    config = tiny_config(method="exconb", epochs=2, **options)
    summary = Trainer(config).fit()
    rows = read_metrics(config.out)
    assert summary["status"] == "finished" and rows[-1]["explanations"] is True
    assert all(v == v for r in rows for v in r.values() if isinstance(v, float))


def test_compile_wraps_the_training_forwards_only(tiny_config):
    trainer = Trainer(tiny_config(method="supcon", compile=True))
    assert isinstance(trainer.contrastive_forward, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(trainer.joint_forward, torch._dynamo.eval_frame.OptimizedModule)
    # explanations and validation use the plain modules (hooks and autograd.grad need no graph breaks)
    assert trainer.classifier_model.encoder is trainer.model.encoder


def test_saliency_cache_reuses_maps_between_refreshes(tiny_config, monkeypatch):
    """saliency_refresh_epochs=2: explain every training image at epochs 0 and 2, none at epoch 1."""
    trainer = Trainer(tiny_config(method="excon", epochs=3, exp_start_epoch=0, saliency_refresh_epochs=2))
    cache = trainer.saliency_cache
    assert cache is not None and trainer.augment.cache is cache
    assert (len(cache), cache.refresh_every, cache.image_size) == (trainer.data.train_size, 2, (32, 32))
    explainer = trainer.augment.explainer_for(trainer.classifier_model)
    explained: list[int] = []
    real_explain = explainer.explain

    def counting_explain(images, targets=None):
        explained.append(images.shape[0])
        return real_explain(images, targets)

    monkeypatch.setattr(explainer, "explain", counting_explain)
    assert trainer.fit()["status"] == "finished"
    rows = read_metrics(trainer.out)
    # 48 images in 3 full batches of 16: drop_last drops none, so epoch 1 finds every map from epoch 0.
    assert [r["saliency_cache_hits"] for r in rows] == [0.0, 1.0, 0.0]
    assert sum(explained) == 2 * trainer.data.train_size  # without the cache: 3 * 48
    assert all(0.0 <= r["masked_correct"] <= 1.0 for r in rows)
    assert json.loads((trainer.out / "config.json").read_text())["resolved"]["saliency_cache_bytes"] == \
        cache.memory_bytes


def test_saliency_cache_is_off_by_default_and_for_other_methods(tiny_config):
    assert Trainer(tiny_config(method="exconb")).saliency_cache is None
    assert Trainer(tiny_config(method="supcon", saliency_refresh_epochs=3)).saliency_cache is None
