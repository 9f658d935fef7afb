"""End-to-end CPU runs of the ``edda`` and ``cgc`` trainer methods on tiny synthetic configurations."""

from __future__ import annotations

import math

import pytest

from exaug.training import Trainer, TrainConfig


def _fit(config: TrainConfig) -> Trainer:
    trainer = Trainer(config)
    summary = trainer.fit()
    assert summary["status"] == "finished" and summary["epochs_completed"] == config.epochs
    for row in trainer.history:
        assert math.isfinite(row["encoder_loss"]) and "val_top1" in row
    return trainer


@pytest.mark.parametrize("options", [
    {},
    {"edda_policy": "random", "edda_target": "lower_confidence"},
    {"edda_target": "exclude", "edda_ratio": 1.0},
])
def test_edda_trains(tiny_config, options):
    trainer = _fit(tiny_config(method="edda", edda_start_epoch=1, **options))
    first, second = trainer.history
    assert "edda_rows" not in first  # before edda_start_epoch: plain cross-entropy
    n = round(trainer.config.edda_ratio * trainer.config.batch_size)
    per_image = 1 if trainer.config.edda_target == "exclude" else 2
    assert 0 < second["edda_rows"] <= per_image * n
    assert trainer.edda_augment.policy == trainer.config.edda_policy
    # The CE optimiser trains encoder and classifier jointly, as for ``ce``.
    assert len(trainer.encoder_optimizer.param_groups[0]["params"]) == len(list(trainer.classifier_model.parameters()))


def test_edda_before_start_equals_ce(tiny_config):
    ce = _fit(tiny_config(method="ce", epochs=1))
    edda = _fit(tiny_config(method="edda", epochs=1, edda_start_epoch=1))
    assert edda.history[0]["encoder_loss"] == pytest.approx(ce.history[0]["encoder_loss"], rel=1e-6)
    assert edda.history[0]["val_top1"] == ce.history[0]["val_top1"]


@pytest.mark.parametrize("unlabeled", [False, True])
def test_cgc_trains(tiny_config, unlabeled):
    trainer = _fit(tiny_config(method="cgc", cgc_unlabeled=unlabeled))
    assert trainer.cgc_layer_name == "encoder.layer4"  # the encoder's last block output
    for row in trainer.history:
        assert row["cgc_loss"] > 0
        assert row["encoder_loss"] == pytest.approx(row["ce_loss"] + 0.5 * row["cgc_loss"], rel=1e-4)


def test_cgc_layer_option_and_lambda_zero(tiny_config):
    trainer = _fit(tiny_config(method="cgc", epochs=1, cgc_layer="encoder.layer3", cgc_lambda=0.0))
    row = trainer.history[0]
    assert trainer.cgc_layer_name == "encoder.layer3"
    assert row["encoder_loss"] == pytest.approx(row["ce_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="encoder.layer9"):
        Trainer(tiny_config(method="cgc", cgc_layer="encoder.layer9"))


@pytest.mark.parametrize("option, value", [
    ("edda_ratio", 1.5), ("edda_fraction", 0.0), ("edda_fraction", 0.6), ("edda_confidence", -0.1),
    ("edda_start_epoch", -1), ("cgc_temperature", 0.0), ("cgc_lambda", -1.0),
])
def test_config_validation(tiny_config, option, value):
    with pytest.raises(ValueError, match=option):
        tiny_config(method="edda", **{option: value})


def test_methods_are_listed():
    from exaug.training.config import METHODS
    from exaug.training.trainer import describe_methods

    assert {"edda", "cgc"} <= set(METHODS) <= set(describe_methods())
    assert not TrainConfig(method="cgc").is_contrastive and TrainConfig(method="edda").is_joint
