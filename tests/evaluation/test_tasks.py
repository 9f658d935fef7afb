"""Evaluation tasks as plugins: the contract every registered task keeps, a plugin task end to end, the
registry's rules, and what ``evaluate_run`` takes from the loaded run (resolved settings, device)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from exaug.evaluation import (
    EvalBatch,
    EvalContext,
    EvaluationTask,
    evaluate_run,
    get_task,
    list_tasks,
    register_task,
    render_eval_markdown,
    resolve_metrics,
    resolve_options,
    unregister_task,
)
from exaug.evaluation.context import build_run_explainer
from exaug.evaluation.tasks import REQUIREMENTS, describe_tasks
from exaug.training import load_run


BUILTIN = ("accuracy", "drop_increase", "infidelity", "insertion_deletion", "content_heatmap", "calibration",
           "adversarial", "tsne", "localisation", "randomisation")


def test_builtin_tasks_are_registered_in_report_order():
    assert tuple(list_tasks())[: len(BUILTIN)] == BUILTIN
    assert list_tasks("*_*") == [n for n in list_tasks() if "_" in n]
    assert list_tasks("in*") == ["infidelity", "insertion_deletion"]
    assert all(describe_tasks()[name] for name in BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_task_contract(name, runs, tmp_path, fast_options):
    """Each task declares itself, runs on two batches with only what it declares, and returns JSON numbers."""
    cls = get_task(name)
    assert cls.name == name and isinstance(cls.options, Mapping) and set(cls.requires) <= set(REQUIREMENTS)
    assert resolve_options(None)[name] == dict(cls.options)  # DEFAULT_OPTIONS comes from the declaration
    run = load_run(runs["exconb_s3"])
    dataset = run.dataset("test", 12)
    explainer = build_run_explainer(run)[0] if "explainer" in cls.requires else None
    ctx = EvalContext(run, dataset, explainer=explainer, batch_size=6)
    task = cls(ctx, resolve_options(fast_options)[name])
    for number, (images, labels) in enumerate(ctx.loader(dataset)):
        task.update(EvalBatch(ctx, number, 6 * number, images, labels))
    result = task.finish()
    assert isinstance(result, dict) and result
    assert json.loads(json.dumps(result)) == json.loads(json.dumps(result, default=str))  # plain JSON types
    json.dumps(task.settings, default=list)
    for file in task.figures(tmp_path).values():
        assert (tmp_path / file).read_bytes()[:4] == b"\x89PNG"
    assert all(isinstance(line, str) for line in cls.markdown(result, task.settings))


class MeanConfidence(EvaluationTask):
    """Mean top softmax probability of the classifier (a plugin written for this test)."""

    options = {"temperature": 1.0}

    def __init__(self, ctx: EvalContext, settings: dict[str, Any]) -> None:
        super().__init__(ctx, settings)
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def update(self, batch: EvalBatch) -> None:
        probs = (batch.logits / self.settings["temperature"]).double().softmax(dim=1)
        self.total += probs.max(dim=1).values.sum()
        self.count += batch.labels.shape[0]

    def finish(self) -> dict[str, Any]:
        return {"mean": float(self.total) / self.count, "images": self.count}


@pytest.fixture
def plugin():
    register_task("mean_confidence")(MeanConfidence)
    yield MeanConfidence
    unregister_task("mean_confidence")


def test_a_plugin_task_is_one_class(plugin, runs, tmp_path):
    from exaug.evaluation import METRICS

    assert METRICS[-1] == "mean_confidence" and resolve_metrics("all")[-1] == "mean_confidence"
    result = evaluate_run(runs["supcon_s3"], "mean_confidence,accuracy", samples=16, batch_size=8, out=tmp_path,
                          progress=False, options={"mean_confidence": {"temperature": 2.0}})
    assert result["evaluation"]["metrics"] == ["accuracy", "mean_confidence"]
    assert result["settings"]["mean_confidence"] == {"temperature": 2.0}
    run = load_run(runs["supcon_s3"])  # independent reference: the same images through the classifier by hand
    images = torch.stack([x for x, _ in run.dataset("test", 16, held_out=True)])
    with torch.no_grad():
        expected = (run.classifier_model(images) / 2.0).double().softmax(dim=1).max(dim=1).values.mean()
    assert result["metrics"]["mean_confidence"] == {"mean": pytest.approx(float(expected), rel=1e-6), "images": 16}
    markdown = (tmp_path / "eval.md").read_text()
    assert "## mean_confidence" in markdown and "| mean |" in markdown
    assert render_eval_markdown(json.loads((tmp_path / "eval.json").read_text())) == markdown
    from exaug.evaluation import METRICS as after

    unregister_task("mean_confidence")
    try:
        from exaug.evaluation import METRICS as without

        assert "mean_confidence" in after and "mean_confidence" not in without  # never stale
    finally:
        register_task("mean_confidence")(MeanConfidence)


def test_registry_rules(plugin):
    with pytest.raises(ValueError, match="already registered"):
        register_task("mean_confidence")(type("Other", (MeanConfidence,), {}))
    register_task("mean_confidence")(MeanConfidence)  # the same class again is a no-op
    for bad in ("all", "grid", "two words", ""):
        with pytest.raises(ValueError, match="identifier other than"):
            register_task(bad)
    with pytest.raises(TypeError, match="EvaluationTask subclass"):
        register_task("not_a_task")(dict)
    needs_gpu = type("NeedsGpu", (MeanConfidence,), {"requires": frozenset({"gpu"})})
    with pytest.raises(ValueError, match="requires unknown"):
        register_task("needs_gpu")(needs_gpu)
    assert "needs_gpu" not in list_tasks()
    with pytest.raises(ValueError, match="unknown metric 'mean_confidense'. Did you mean 'mean_confidence'"):
        get_task("mean_confidense")


def test_uses_the_loaded_runs_resolved_settings(runs, tmp_path):
    """The explainer layer comes from ``TrainedRun.resolved`` (read once by load_run), not from config.json."""
    run = load_run(runs["supcon_s3"])
    on_disk = json.loads((runs["supcon_s3"] / "config.json").read_text())["resolved"]
    assert run.resolved == on_disk and run.resolved["explainer_layer"] == "encoder.layer2.1.conv2"
    moved = dataclasses.replace(run, resolved={**run.resolved, "explainer_layer": "encoder.layer3"})
    result = evaluate_run(moved, "drop_increase", samples=8, out=tmp_path, progress=False,
                          options={"drop_increase": {"keep_fractions": (0.45,)}, "grid": {"images": 1}})
    assert result["explainer"]["target_layer"] == "encoder.layer3"


@pytest.mark.parametrize("device", ["cuda:7", "not-a-device"])
def test_bad_device_is_a_usage_error(runs, tmp_path, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match=f"invalid device '{device}'"):
        evaluate_run(runs["supcon_s3"], "accuracy", out=tmp_path, device=device)
    assert not (tmp_path / "eval.json").exists()
