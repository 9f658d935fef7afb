"""Three tiny trained runs on the synthetic data, shared by the evaluation tests (trained once per session).

Two seeds of ExConB and one SupCon run, each about a second of training on one CPU thread. Metric settings are
cut down (fewer perturbations, steps and corruptions) so that the whole directory stays well under a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TINY: dict[str, Any] = dict(
    dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=2, batch_size=16, lr=0.05,
    classifier_lr=0.05, train_samples=48, eval_samples=32, exp_start_epoch=1, quiet=True, device="cpu",
)

#: Cheaper settings for the tests; every other setting keeps its default.
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "infidelity": {"n_perturb_samples": 3},
    "insertion_deletion": {"steps": 8},
    "calibration": {"corruptions": ("gaussian_noise", "contrast")},
    "adversarial": {"pgd_steps": 2},
    "grid": {"images": 4},
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"exconb_s3", "exconb_s4", "supcon_s3"}`` -> trained run folders."""
    from exaug.training import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for method, seed in (("exconb", 3), ("exconb", 4), ("supcon", 3)):
        folder = root / f"{method}_s{seed}"
        trainer = Trainer(TrainConfig(method=method, seed=seed, out=str(folder), **TINY))
        trainer.fit()
        trainer.close()
        folders[f"{method}_s{seed}"] = folder
    return folders


@pytest.fixture(scope="session")
def fast_options() -> dict[str, dict[str, Any]]:
    return FAST_OPTIONS


@pytest.fixture(scope="session")
def full_eval(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``(result, out folder)`` of every metric on 32 test images of ``exconb_s3``, in two batches of 16."""
    from exaug.evaluation import evaluate_run

    out = tmp_path_factory.mktemp("full_eval")
    result = evaluate_run(runs["exconb_s3"], metrics="all", samples=32, batch_size=16, out=out, progress=False,
                          options=FAST_OPTIONS)
    return result, out


@pytest.fixture(scope="session")
def evaluated_runs(runs: dict[str, Path]) -> dict[str, Path]:
    """The three runs, each evaluated into its default ``<run>/eval`` with the same settings (for ``compare``)."""
    from exaug.evaluation import evaluate_run

    options = {**FAST_OPTIONS, "calibration": {"corruptions": ()}, "grid": {"images": 2}}
    for folder in runs.values():
        evaluate_run(folder, metrics="accuracy,drop_increase,infidelity,calibration", samples=16, progress=False,
                     options=options)
    return runs
