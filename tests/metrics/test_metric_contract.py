"""The contract every streaming metric class keeps: declared state that ``reset`` restores, a declared
``higher_is_better``, and batch-size independence (two half-batches, or two merged instances, equal one batch)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import pytest
import torch

import exaug.metrics as metrics_pkg
from exaug.explainers import create_explainer
from exaug.metrics import Metric, sensitivity_max

NUM_CLASSES = 5  # the conftest CNN's


def _images() -> torch.Tensor:
    return torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(11))


def _labels() -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (6,), generator=torch.Generator().manual_seed(12))


def _logits() -> torch.Tensor:
    return torch.randn(6, NUM_CLASSES, generator=torch.Generator().manual_seed(13)) * 2


def _saliency_and_masks() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(14)
    return torch.rand(6, 1, 16, 16, generator=g), torch.rand(6, 1, 16, 16, generator=g) > 0.6


def _gradcam(model: torch.nn.Module):
    return create_explainer("gradcam", model, target_layer="block2")


def _shift(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic infidelity perturbation (a function of the inputs only), so batch splits cannot change it."""
    perturbation = 0.01 * torch.cos(inputs * 3.0)
    return perturbation, inputs - perturbation


# name -> (build(model) -> metric, batch() -> tuple of update arguments, each split along dim 0)
CASES: dict[str, tuple[Callable[[torch.nn.Module], Metric], Callable[[], tuple[torch.Tensor, ...]]]] = {
    "Accuracy": (lambda m: metrics_pkg.Accuracy(ks=(1, 3)), lambda: (_logits(), _labels())),
    "CalibrationError": (lambda m: metrics_pkg.CalibrationError(5), lambda: (_logits(), _labels())),
    "AdversarialAccuracy": (
        lambda m: metrics_pkg.AdversarialAccuracy(m, "pgd", eps=0.1, alpha=0.05, steps=2, random_start=False),
        lambda: (_images(), _labels()),
    ),
    "ContentHeatmap": (lambda m: metrics_pkg.ContentHeatmap(), _saliency_and_masks),
    "DropIncrease": (lambda m: metrics_pkg.DropIncrease(_gradcam(m), m, (0.2, 0.5)), lambda: (_images(),)),
    "Infidelity": (
        lambda m: metrics_pkg.Infidelity(_gradcam(m), m, perturbation=_shift, n_perturb_samples=2),
        lambda: (_images(),),
    ),
    "SensitivityMax": (
        lambda m: metrics_pkg.SensitivityMax(_gradcam(m), m, n_perturb_samples=2, seed=5),
        lambda: (_images(),),
    ),
    "InsertionDeletion": (lambda m: metrics_pkg.InsertionDeletion(_gradcam(m), m, steps=4), lambda: (_images(),)),
    "Localisation": (lambda m: metrics_pkg.Localisation(), _saliency_and_masks),
    "ModelParameterRandomisation": (
        lambda m: metrics_pkg.ModelParameterRandomisation(_gradcam(m), m, depth=1, seed=4),
        lambda: (_images(),),
    ),
}


def _concrete_metric_classes() -> dict[str, type[Metric]]:
    found: dict[str, type[Metric]] = {}
    pending = list(Metric.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("exaug.metrics") and not inspect.isabstract(cls):
            found[cls.__name__] = cls
    return found


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return type(a) is type(b) and a == b


def _keys(value: Any) -> set[str]:
    """Every string key anywhere in a (nested) compute() result."""
    if isinstance(value, Mapping):
        return {str(k) for k in value} | set().union(*(_keys(v) for v in value.values()))
    return set()


def _approx(value: Any) -> Any:
    return pytest.approx(value, rel=1e-5, abs=1e-6) if not isinstance(value, dict) else {
        k: _approx(v) for k, v in value.items()}


def test_every_metric_class_is_covered():
    assert set(_concrete_metric_classes()) == set(CASES)


@pytest.fixture(params=sorted(CASES))
def case(request):
    build, batch = CASES[request.param]
    return request.param, build, batch


def test_higher_is_better_is_declared(case, cnn):
    name, build, batch = case
    metric = build(cnn)
    direction = type(metric).higher_is_better
    if isinstance(direction, Mapping):
        assert direction and all(v in (True, False, None) for v in direction.values())
        metric.update(*batch())
        assert set(direction) <= _keys(metric.compute()), f"{name}: higher_is_better names values it does not report"
    else:
        assert direction in (True, False, None)


def test_reset_restores_the_declared_state(case, cnn):
    name, build, batch = case
    metric = build(cnn)
    declared = metric.default_states()
    assert declared, f"{name} declares no state"
    assert all(_same(metric.states()[k], v) for k, v in declared.items())
    metric.update(*batch())
    assert any(not _same(metric.states()[k], v) for k, v in declared.items())
    metric.reset()
    assert all(_same(metric.states()[k], v) for k, v in declared.items())
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_two_half_batches_equal_one_batch(case, cnn):
    name, build, batch = case
    model = cnn
    args = batch()
    halves = build(model)
    first, second = build(model), build(model)
    for part, other in ((slice(0, 3), first), (slice(3, 6), second)):
        halves.update(*(a[part] for a in args))
        other.update(*(a[part] for a in args))
    merged = first.merge(second).compute()
    if name == "SensitivityMax":
        # Its perturbations come from one generator per reset, so a split batch draws other noise: check the
        # running mean against the functional on the same two batches with the same generator instead.
        g = torch.Generator().manual_seed(5)
        expl = halves.explainer
        values = torch.cat([sensitivity_max(expl, args[0][:3], n_perturb_samples=2, seed=g),
                            sensitivity_max(expl, args[0][3:], n_perturb_samples=2, seed=g)])
        assert halves.compute() == pytest.approx(float(values.mean()), rel=1e-5)
        return
    whole = build(model)
    whole.update(*args)
    expected = whole.compute()
    assert halves.compute() == _approx(expected)
    assert merged == _approx(expected)


class _Sum(Metric):
    higher_is_better = None

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", 0.0, "sum")
        self.add_state("seen", [], "cat")
        self.add_state("first", None, "same")

    def update(self, values: torch.Tensor) -> None:
        self.accumulate(total=values.sum(), seen=values.tolist(), first=values[0])

    def compute(self) -> float:
        self._require_data(len(self.seen))
        return float(self.total)


def test_state_declaration_rules():
    metric = _Sum()
    metric.update(torch.tensor([1.0, 2.0]))
    metric.update(torch.tensor([3.0]))
    assert metric.compute() == 6.0 and metric.seen == [1.0, 2.0, 3.0] and float(metric.first) == 1.0
    metric.reset()
    assert metric.states() == {"total": 0.0, "seen": [], "first": None}
    metric.update(torch.tensor([4.0]))
    assert metric.default_states()["seen"] == []  # the default list is never the live one
    with pytest.raises(ValueError, match="new identifier"):
        metric.add_state("total", 0)
    with pytest.raises(ValueError, match="reduce must be one of"):
        metric.add_state("other", 0, "mean")
    with pytest.raises(KeyError, match="no state 'totl'"):
        metric.accumulate(totl=1)
    with pytest.raises(TypeError, match="cannot merge"):
        metric.merge(metrics_pkg.ContentHeatmap())

    class Undeclared(Metric):
        def update(self) -> None:
            return None

        def compute(self) -> float:
            return 0.0

    with pytest.raises(TypeError, match="must declare higher_is_better"):
        Undeclared()
