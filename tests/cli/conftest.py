"""Tiny trained runs on the synthetic data, shared by the command-line tests (trained once per session).

The same recipe as ``tests/evaluation/conftest.py`` (two ExConB seeds and one SupCon run, about a second each),
so that ``exaug evaluate`` / ``compare`` / ``explain`` are tested through :func:`exaug.cli.main` on real runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RUNS = {"exconb_s3": ("exconb", 3), "exconb_s4": ("exconb", 4), "supcon_s3": ("supcon", 3)}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"exconb_s3", "exconb_s4", "supcon_s3"}`` -> run folders trained for 2 epochs."""
    from exaug.training import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("cli_runs")
    for name, (method, seed) in RUNS.items():
        trainer = Trainer(TrainConfig(
            method=method, seed=seed, out=str(root / name), dataset="synthetic", model="resnet18", width=0.0625,
            feat_dim=16, epochs=2, batch_size=16, lr=0.05, classifier_lr=0.05, train_samples=48, eval_samples=32,
            exp_start_epoch=1, quiet=True, device="cpu"))
        trainer.fit()
        trainer.close()
    return {name: root / name for name in RUNS}


@pytest.fixture(scope="session")
def evaluated_runs(runs: dict[str, Path]) -> dict[str, Path]:
    """The three runs, each evaluated into its default ``<run>/eval`` with the same cheap settings."""
    from exaug.evaluation import evaluate_run

    options = {"infidelity": {"n_perturb_samples": 3}, "calibration": {"corruptions": ()}, "grid": {"images": 2}}
    for folder in runs.values():
        evaluate_run(folder, metrics="accuracy,drop_increase,infidelity,calibration", samples=16, progress=False,
                     options=options)
    return runs
