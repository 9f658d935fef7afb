"""Contract of every registered training method: it builds, trains tiny epochs on synthetic data, logs exactly the
keys it declares, and a run interrupted after its first epoch and resumed equals the uninterrupted run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from exaug.training import CHECKPOINT_KEYS, Trainer, TrainingMethod, list_methods
from exaug.training.logger import read_metrics

TRAINER_KEYS = ("epoch", "method", "epoch_time")


def _options(method: str) -> dict:
    # Two encoder epochs, the second one with the method's extra machinery switched on (explanations, EDDA).
    return dict(method=method, epochs=2, classifier_epochs=1, exp_start_epoch=1, edda_start_epoch=1)


def _interrupt_after_first_epoch(trainer, row):
    if row["epoch"] == 0:
        raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("method", list_methods())
def test_method_contract(method, tiny_config):
    config = tiny_config(**_options(method))
    full = Trainer(config)
    assert isinstance(full.method, TrainingMethod) and full.method.name == method
    assert full.total_epochs == type(full.method).total_epochs(config) >= config.epochs
    summary = full.fit()
    assert summary["status"] == "finished" and summary["epochs_completed"] == full.total_epochs
    rows = read_metrics(full.out)
    assert [r["epoch"] for r in rows] == list(range(full.total_epochs))
    for row in rows:
        # exactly the declared keys, in the declared order, after the trainer's own
        assert list(row) == [*TRAINER_KEYS[:2], *full.method.metric_keys(row["epoch"]), TRAINER_KEYS[2]]
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), row
    assert "val_top1" in rows[-1]
    state = torch.load(Path(config.out) / "last.pt", weights_only=False)
    assert set(CHECKPOINT_KEYS) <= set(state) and state["method_state"] == full.method.state_dict()

    interrupted = tiny_config(**_options(method))
    first = Trainer(interrupted, callbacks=[_interrupt_after_first_epoch])
    assert first.fit()["status"] == "interrupted"
    resumed = Trainer(type(interrupted)(**{**interrupted.to_dict(), "resume": True}))
    assert resumed.fit()["status"] == "finished"
    strip = [{k: v for k, v in r.items() if k != "epoch_time"} for r in read_metrics(resumed.out)]
    assert strip == [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]  # exact, not approximate
    want = full.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, want[name]), name
