from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from exaug.training import TrainConfig, cosine_factor
from exaug.training.config import add_config_arguments, config_from_args


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_every_field_has_a_flag_with_help():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    text = parser.format_help()
    for field in dataclasses.fields(TrainConfig):
        if field.name != "explainer_options":  # config-file only
            assert "--" + field.name.replace("_", "-") in text
            assert field.metadata["help"].split()[0] in text


def test_defaults_are_the_paper_recipe():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.temperature, c.lr_min_factor) == (0.5, 0.9, 1e-4, 0.1, 1e-3)
    assert (c.epochs, c.feat_dim, c.mask_threshold, c.mask_fill, c.background_copies) == (200, 128, 0.5, "zero", "all")


def test_config_file_then_flags_override(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"method": "excon", "epochs": 7, "lr": 0.2, "explainer_options": {"relu": False}}))
    c = parse(["--config", str(path), "--epochs", "3", "--no-quiet", "--keep-fraction", "0.3"])
    assert (c.method, c.epochs, c.lr, c.quiet, c.keep_fraction) == ("excon", 3, 0.2, False, 0.3)
    assert c.explainer_options == {"relu": False}
    assert TrainConfig().saliency_refresh_epochs == 1
    assert parse(["--saliency-refresh-epochs", "3"]).saliency_refresh_epochs == 3
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("method: supcon\nbatch-size: 32\nexplainer_layer: encoder.layer3\n")
    c = parse(["--config", str(yaml_path)])
    assert (c.method, c.batch_size, c.explainer_layer) == ("supcon", 32, "encoder.layer3")


def test_bad_values_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'exconbb'.*Did you mean 'exconb'"):
        TrainConfig(method="exconbb")
    with pytest.raises(ValueError, match="unknown config option 'epoch'.*'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
    for refresh in (0, 1.5, True):
        with pytest.raises(ValueError, match="saliency_refresh_epochs must be an int >= 1"):
            TrainConfig(saliency_refresh_epochs=refresh)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        parse(["--config", str(tmp_path / "nope.json")])


def test_cosine_schedule():
    assert cosine_factor(0, 10) == pytest.approx(1.0)
    assert cosine_factor(10, 10) == pytest.approx(1e-3)
    assert cosine_factor(5, 10, min_factor=0.0) == pytest.approx(0.5)
    assert [cosine_factor(e, 10, warmup=2) for e in (0, 1)] == [0.5, 1.0]
    values = [cosine_factor(e, 20) for e in range(21)]
    assert values == sorted(values, reverse=True)
