from __future__ import annotations

import json
import subprocess
import sys

import pytest

import exaug
from exaug.cli import main
from exaug.training.logger import read_metrics


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and exaug.__version__ in capsys.readouterr().out


def test_explainers_lists_every_backend_with_a_description(capsys):
    assert main(["explainers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == exaug.list_explainers() and len(names) >= 12
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_console_script_entry_point():
    """`python -m exaug` is what `torchrun -m exaug` runs."""
    out = subprocess.run([sys.executable, "-m", "exaug", "--version"], capture_output=True, text=True, check=True)
    assert exaug.__version__ in out.stdout


def test_train_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--method", "--exp-start-epoch", "--explainer-layer", "--mask-threshold", "--keep-fraction",
                 "--views-on-device", "--resume", "--amp", "--config", "torchrun"):
        assert flag in text


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
