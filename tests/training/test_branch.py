"""Branching a run from another run's checkpoint (``init_from``) and stopping a run early (``stop_after``).

The reference for a branch is the run it claims to continue: a warm-up of ``W`` epochs (the first ``W`` of a
``W + B``-epoch schedule) plus a branch of ``B`` epochs must equal one uninterrupted run of ``W + B`` epochs,
bit for bit, when the branch's method is the warm-up's or only switches on its explanation stage at ``W``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from exaug.cli import build_parser
from exaug.training import Trainer
from exaug.training.config import config_from_args
from exaug.training.logger import read_metrics
from exaug.utils.checkpoint import CheckpointError

W, B = 1, 1


def rows(folder):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in read_metrics(folder)]


def weights(trainer):
    return {**{f"model.{k}": v for k, v in trainer.model.state_dict().items()},
            **{f"classifier.{k}": v for k, v in trainer.classifier.state_dict().items()}}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def warm_up(tiny_config, method="supcon", **options):
    """The first ``W`` epochs of a ``W + B``-epoch run of ``method``."""
    trainer = Trainer(tiny_config(method=method, epochs=W + B, stop_after=W, **options))
    summary = trainer.fit()
    assert summary["status"] == "stopped" and summary["epochs_completed"] == W
    return trainer


@pytest.mark.parametrize("warm_method, method, options", [
    ("supcon", "supcon", {}),
    ("supcon", "excon", {"exp_start_epoch": W}),
    ("ce", "edda", {"edda_start_epoch": W}),
])
def test_a_branch_equals_the_uninterrupted_run(tiny_config, warm_method, method, options):
    full = Trainer(tiny_config(method=method, epochs=W + B, **options))
    assert full.fit()["status"] == "finished"
    warm = warm_up(tiny_config, warm_method, **options)
    before = folder_digest(warm.out)
    branch = Trainer(tiny_config(method=method, epochs=W + B, init_from=str(warm.out), **options))
    summary = branch.fit()
    assert summary["status"] == "finished" and summary["epochs_completed"] == W + B
    assert_same_weights(branch, full)
    assert rows(branch.out) == rows(full.out)[W:]  # the branch logs its own epochs, exactly the run's
    for opt in ("encoder_optimizer", "classifier_optimizer"):
        got, want = getattr(branch, opt).state_dict(), getattr(full, opt).state_dict()
        assert got["param_groups"] == want["param_groups"], opt
    assert folder_digest(warm.out) == before  # the warm-up is only read


def test_branch_records_the_warm_up_path_and_sha256(tiny_config):
    warm = warm_up(tiny_config)
    branch = Trainer(tiny_config(method="exconb", epochs=W + B, exp_start_epoch=W,
                                 init_from=str(warm.out / "last.pt")))
    branch.fit()
    recorded = json.loads((branch.out / "config.json").read_text())
    origin = recorded["resolved"]["branched_from"]
    assert recorded["init_from"] == str(warm.out / "last.pt")
    assert origin["path"] == str((warm.out / "last.pt").resolve())
    assert origin["sha256"] == hashlib.sha256((warm.out / "last.pt").read_bytes()).hexdigest()
    assert origin["epoch"] == W and origin["method"] == "supcon"
    assert [c["option"] for c in origin["changes"]] == ["method"]
    assert json.loads((branch.out / "summary.json").read_text())["branched_from"] == origin


def test_a_branch_from_a_finished_run_equals_resuming_it_with_more_epochs(tiny_config):
    """A complete ``W``-epoch run as the warm-up: the branch recomputes the cosine over its own horizon from
    epoch ``W``, exactly as ``--resume --epochs W+B`` of that run does."""
    warm = Trainer(tiny_config(method="supcon", epochs=W))
    warm.fit()
    copy = warm.out.parent / "resumed"
    shutil.copytree(warm.out, copy)
    resumed = Trainer(tiny_config(method="supcon", epochs=W + B, out=str(copy), resume=True))
    resumed.fit()
    branch = Trainer(tiny_config(method="supcon", epochs=W + B, init_from=str(warm.out)))
    branch.fit()
    assert_same_weights(branch, resumed)
    # The resume marks its first row with the change it made; the branch records it in branched_from instead.
    assert rows(branch.out) == [{k: v for k, v in r.items() if k != "changes"} for r in rows(resumed.out)[W:]]


def test_an_interrupted_branch_resumes_as_a_branch(tiny_config):
    warm = Trainer(tiny_config(method="supcon", epochs=3, stop_after=1))
    warm.fit()
    options = dict(method="excon", epochs=3, exp_start_epoch=1, init_from=str(warm.out))
    full = Trainer(tiny_config(**options))
    full.fit()

    def interrupt(trainer, row):
        raise KeyboardInterrupt

    config = tiny_config(**options)
    assert Trainer(config, callbacks=[interrupt]).fit()["status"] == "interrupted"
    resumed = Trainer(type(config)(**{**config.to_dict(), "resume": True}))
    assert resumed.fit()["status"] == "finished"
    assert_same_weights(resumed, full)
    assert rows(resumed.out) == rows(full.out)
    origin = json.loads((resumed.out / "config.json").read_text())["resolved"]["branched_from"]
    assert origin == json.loads((full.out / "config.json").read_text())["resolved"]["branched_from"]


@pytest.mark.parametrize("change, option", [
    ({"batch_size": 8}, "batch_size"), ({"seed": 4}, "seed"), ({"width": 0.125}, "width"),
    ({"train_samples": 40}, "train_samples"),
])
def test_a_branch_with_other_networks_or_data_names_the_option(tiny_config, change, option):
    warm = warm_up(tiny_config)
    branch = Trainer(tiny_config(method="excon", epochs=W + B, init_from=str(warm.out), **change))
    with pytest.raises(CheckpointError, match=f"option '{option}'"):
        branch.fit()
    assert not (branch.out / "config.json").exists()


def test_a_branch_across_method_families_is_refused(tiny_config):
    warm = warm_up(tiny_config)
    with pytest.raises(CheckpointError, match="method 'edda' is joint.*'supcon' is contrastive"):
        Trainer(tiny_config(method="edda", epochs=W + B, init_from=str(warm.out))).fit()


def test_a_missing_warm_up_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="cannot --init-from: no checkpoint at .*nowhere"):
        Trainer(tiny_config(method="supcon", init_from=str(tmp_path / "nowhere"))).fit()


def test_stop_after_then_resume_finishes_the_run(tiny_config):
    full = Trainer(tiny_config(method="supcon", epochs=2))
    full.fit()
    config = tiny_config(method="supcon", epochs=2, stop_after=1)
    assert Trainer(config).fit()["status"] == "stopped"
    resumed = Trainer(type(config)(**{**config.to_dict(), "resume": True, "stop_after": None}))
    assert resumed.fit()["status"] == "finished"
    assert_same_weights(resumed, full)
    assert rows(resumed.out) == rows(full.out)


def test_the_command_line_flags(tmp_path):
    args = build_parser().parse_args(["train", "--init-from", str(tmp_path), "--stop-after", "3"])
    config = config_from_args(args)
    assert config.init_from == str(tmp_path) and config.stop_after == 3
    with pytest.raises(ValueError, match="stop_after must be a positive int"):
        type(config)(**{**config.to_dict(), "stop_after": 0})
