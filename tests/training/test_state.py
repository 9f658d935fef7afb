"""Checkpoint state of a run: RNG states as tensors, structural validation, option changes, optimizer updates."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from exaug.training import TrainConfig
from exaug.training.schedule import cosine_factor
from exaug.training.state import (
    NEUTRAL_OPTIONS,
    apply_optimizer_options,
    config_changes,
    rng_state,
    set_rng_state,
    validate_checkpoint,
)
from exaug.utils.checkpoint import CheckpointError, atomic_save, load_checkpoint, remove_stale_temporaries


def draws() -> tuple[list[float], list[float], list[float], list[float]]:
    """Numbers from every global generator, Gaussian caches included."""
    return ([random.random() for _ in range(3)] + [random.gauss(0, 1)],
            list(np.random.rand(3)) + [np.random.standard_normal()],
            torch.rand(3).tolist(), torch.randn(2).tolist())


def test_rng_state_survives_a_safe_round_trip_through_a_file_and_restores_every_generator():
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = draws()
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert draws() == expected


def test_set_rng_state_accepts_the_legacy_object_form():
    legacy = {"torch": torch.get_rng_state(), "cuda": None, "numpy": np.random.get_state(),
              "python": random.getstate()}
    expected = draws()
    set_rng_state(legacy)
    assert draws() == expected


def genuine_state() -> dict:
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    return {"config": {"epochs": 3}, "epoch": 2, "best_val": 1.0, "model": net.state_dict(),
            "classifier": net.state_dict(), "optimizers": {"encoder": opt.state_dict(), "classifier": opt.state_dict()},
            "schedulers": {"encoder": sched.state_dict(), "classifier": sched.state_dict()}, "history": [],
            "rng": rng_state()}


@pytest.mark.parametrize("change, message", [
    ({"config": None}, "'config' is a NoneType"),
    ({"epoch": True}, "'epoch' is True, not an integer"),
    ({"epoch": 2.0}, "not an integer"),
    ({"epoch": 4}, r"outside \[0, 3\]"),
    ({"epoch": -1}, r"outside \[0, 3\]"),
    ({"model": {}}, "'model' is not a state_dict"),
    ({"classifier": {"w": [1.0]}}, "'classifier' is not a state_dict"),
    ({"optimizers": {"encoder": {}}}, "'optimizers' must map"),
    ({"best_val": "high"}, "'best_val' is 'high'"),
    ({"history": {"epoch": 0}}, "'history' is not a list"),
    ({"rng": {"numpy": 1}}, "'rng' does not hold"),
])
def test_validate_checkpoint_names_the_file_and_the_problem(change, message):
    validate_checkpoint(genuine_state(), "x/last.pt", total_epochs=3)  # the genuine one passes
    with pytest.raises(CheckpointError, match=rf"checkpoint 'x/last.pt': .*{message}"):
        validate_checkpoint({**genuine_state(), **change}, "x/last.pt", total_epochs=3)


def test_config_changes_ignore_neutral_and_unknown_options():
    saved = TrainConfig(out="a", device="cpu", lr=0.5).to_dict()
    current = TrainConfig(out="b", device="auto", lr=0.1, quiet=True).to_dict()
    saved.pop("seed")  # an option the checkpoint predates is not compared
    current["seed"] = 9
    assert config_changes(saved, current, epoch=4) == [{"option": "lr", "old": 0.5, "new": 0.1, "epoch": 4}]
    assert {"out", "device", "quiet", "resume", "workers"} <= NEUTRAL_OPTIONS
    assert not {"lr", "batch_size", "seed", "temperature", "explainer", "image_size", "train_samples",
                "method", "model", "dataset", "epochs"} & NEUTRAL_OPTIONS


def test_apply_optimizer_options_matches_a_schedule_built_with_the_new_values():
    """Reference: an optimizer and LambdaLR built from the start with the new lr, stepped as far."""
    def build(lr: float, total: int) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_factor(e, total))

    old_opt, old_sched = build(0.5, 4)
    for _ in range(2):
        old_opt.step(), old_sched.step()
    new_opt, new_sched = build(0.5, 8)  # the resumed run's objects (new horizon), restored from the old state
    new_opt.load_state_dict(old_opt.state_dict())
    new_sched.load_state_dict(old_sched.state_dict())
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.5 * cosine_factor(2, 4))  # the stale value
    apply_optimizer_options(new_opt, new_sched, 0.1, momentum=0.8, weight_decay=0.0)
    ref_opt, ref_sched = build(0.1, 8)
    for _ in range(2):
        ref_opt.step(), ref_sched.step()
    for _ in range(3):  # and it keeps following the reference schedule
        group, ref = new_opt.param_groups[0], ref_opt.param_groups[0]
        assert group["lr"] == pytest.approx(ref["lr"]) and group["initial_lr"] == ref["initial_lr"]
        assert (group["momentum"], group["weight_decay"]) == (0.8, 0.0)
        new_opt.step(), new_sched.step(), ref_opt.step(), ref_sched.step()


def test_atomic_save_failure_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def failing(obj, handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(CheckpointError, match=r"last\.pt.*No space left on device.*previous file is kept"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_remove_stale_temporaries_only_removes_temporaries(tmp_path):
    for name in (".last.pt.x1.tmp", ".best.pt.y2.tmp", ".summary.json.tmp", "last.pt", "notes.tmp"):
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".best.pt.y2.tmp", ".last.pt.x1.tmp", ".summary.json.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]


@pytest.mark.parametrize("name, value", [("lr", 1e40), ("lr", float("inf")), ("classifier_lr", float("nan")),
                                         ("momentum", float("inf")), ("weight_decay", -1e39)])
def test_optimiser_settings_beyond_float32_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number"):
        TrainConfig(**{name: value})
