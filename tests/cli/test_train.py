"""``exaug train``: help, config files with flag overrides, ``--option``, and one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from exaug.cli import main
from exaug.training import METHODS, describe_methods
from exaug.training.logger import read_metrics

TINY = ["--dataset", "synthetic", "--epochs", "1", "--train-samples", "32", "--eval-samples", "16", "--batch-size",
        "16", "--width", "0.0625", "--feat-dim", "16", "--model", "resnet18", "--quiet", "--device", "cpu"]


def test_train_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--method", "--exp-start-epoch", "--explainer-layer", "--mask-threshold", "--keep-fraction",
                 "--views-on-device", "--resume", "--amp", "--config", "torchrun", "--option"):
        assert flag in text


def test_train_help_lists_every_method_on_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    described = describe_methods()
    assert set(METHODS) <= set(described)
    for name, text in described.items():
        assert sum(bool(re.fullmatch(rf"\s+{re.escape(name)}\s+{re.escape(text)}", line)) for line in lines) == 1


def test_train_from_config_file_with_flag_override(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "excon", "dataset": "synthetic", "model": "resnet18", "width": 0.0625,
                                  "feat_dim": 16, "epochs": 5, "batch_size": 16, "lr": 0.05, "train_samples": 32,
                                  "eval_samples": 16, "device": "cpu"}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["method"] == "excon" and saved["epochs"] == 1 and saved["lr"] == 0.05
    assert len(read_metrics(out)) == 1
    assert "finished: best val top-1" in capsys.readouterr().out


def test_option_sets_explainer_options_over_the_config_file(tmp_path):
    """``relu=False`` is the boolean False (it used to be the truthy string "False"), merged key by key."""
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"explainer_options": {"relu": True, "target_layer": "encoder.layer2"}}))
    out = tmp_path / "run"
    argv = ["train", *TINY, "--method", "excon", "--exp-start-epoch", "0", "--config", str(config),
            "--option", "relu=False", "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())["explainer_options"]
    assert saved == {"relu": False, "target_layer": "encoder.layer2"} and saved["relu"] is False


@pytest.mark.parametrize("argv, message", [
    (["--method", "exconbb"], "unknown method 'exconbb'. Did you mean 'exconb'?"),
    (["--dataset", "cifar100", "--data-root", "/nonexistent/data"], "cifar100: looked for the extracted dataset"),
    (["--dataset", "cifar1000"], "Did you mean 'cifar100'?"),
    (["--model", "resnet19"], "resnet18"),
    (["--explainer", "gradcamm", "--method", "exconb"], "Did you mean 'gradcam'?"),
])
def test_train_errors_are_clear(argv, message, tmp_path, capsys):
    base = ["train", "--epochs", "1", "--train-samples", "32", "--batch-size", "16", "--width", "0.0625",
            "--model", "resnet18", "--quiet", "--out", str(tmp_path / "x"), "--device", "cpu"]
    code = main(base + argv)
    assert code != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda:7"], "device 'cuda:7'"),  # a RuntimeError of the device check: still bad usage
    (["--config", "/nonexistent/run.yaml"], "run.yaml"),
    (["--option", "relux=1", "--method", "excon", "--exp-start-epoch", "0"], "relux"),
])
def test_train_usage_errors_exit_2_on_one_line(argv, message, tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug train: error: ") and message in err and err.count("\n") == 1


def test_existing_run_folder_is_refused_on_one_line(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["train", *TINY, "--method", "supcon", "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", *TINY, "--method", "supcon", "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("exaug train: error: ") and "already holds a run" in err and err.count("\n") == 1


def test_diverged_training_is_a_failed_run(tmp_path, capsys, monkeypatch):
    from exaug.training import Trainer, TrainingDiverged

    def diverge(self):
        raise TrainingDiverged("loss is nan at epoch 1, step 3\nlower --lr")

    monkeypatch.setattr(Trainer, "fit", diverge)
    argv = ["train", *TINY, "--method", "supcon", "--out", str(tmp_path / "x")]
    assert main(argv) == 1
    assert capsys.readouterr().err == "exaug train: error: loss is nan at epoch 1, step 3 lower --lr\n"
    with pytest.raises(TrainingDiverged):
        main(["--debug", *argv])
