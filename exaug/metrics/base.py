"""The streaming-metric contract and the small helpers every metric shares.

A metric class follows torchmetrics' pattern without depending on it:

* it **declares its state** in ``__init__`` with :meth:`Metric.add_state` (name, default, how two states
  combine); :meth:`Metric.reset` restores every default, :meth:`Metric.merge` folds another instance's state in
  (e.g. two workers, or two halves of a dataset);
* it **declares its direction**: ``higher_is_better`` is ``True``, ``False`` or ``None`` (no direction), or a
  mapping ``{reported value: True / False / None}`` when one class reports several values;
* :meth:`Metric.update` folds a batch into the state (tensors stay on the batch's device, no host sync) through
  the same per-batch function the functional twin of the class uses, so both always agree;
  :meth:`Metric.compute` turns the state into Python numbers (the only host sync).

Example:
    >>> import torch
    >>> class MeanAbs(Metric):
    ...     higher_is_better = False
    ...     def __init__(self) -> None:
    ...         super().__init__()
    ...         self.add_state("total", 0.0, "sum")
    ...         self.add_state("count", 0, "sum")
    ...     def update(self, values: torch.Tensor) -> None:
    ...         self.accumulate(total=values.abs().sum(), count=values.numel())
    ...     def compute(self) -> float:
    ...         self._require_data(self.count)
    ...         return float(self.total) / self.count
    >>> metric = MeanAbs()
    >>> metric.update(torch.tensor([1.0, -3.0]))
    >>> other = MeanAbs()
    >>> other.update(torch.tensor([-2.0]))
    >>> metric.merge(other).compute()
    2.0
    >>> metric.reset()
    >>> metric.states()
    {'total': 0.0, 'count': 0}
"""

from __future__ import annotations

import abc
import copy
from typing import Any, ClassVar, Literal, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from ..explainers import Explainer, resolve_explainer
from ..utils.isolation import isolated
from ..utils.outputs import logits_of

__all__ = ["REDUCTIONS", "Direction", "Metric", "explainer_from"]

#: How :meth:`Metric.merge` and :meth:`Metric.accumulate` combine a state with a new value: ``"sum"`` adds,
#: ``"cat"`` concatenates (lists, or tensors along dim 0), ``"same"`` keeps the first value (a state that does
#: not depend on the data seen, e.g. the abscissae of a curve).
REDUCTIONS: tuple[str, ...] = ("sum", "cat", "same")
Reduce = Literal["sum", "cat", "same"]
#: ``higher_is_better`` of one reported value: ``True``, ``False`` or ``None`` (no direction).
Direction = Union[bool, None]


class Metric(abc.ABC):
    """Base class of the streaming metrics: declared state, ``update(...)`` per batch, ``compute()``, ``reset()``.

    Subclasses call ``super().__init__()`` first, then :meth:`add_state` for every running quantity, and set the
    class attribute ``higher_is_better``.
    """

    higher_is_better: ClassVar[Direction | Mapping[str, Direction]]

    def __init__(self) -> None:
        # Checked here rather than in __init_subclass__: abstract intermediate classes need not declare it.
        if not hasattr(type(self), "higher_is_better"):
            raise TypeError(f"{type(self).__name__} must declare higher_is_better (True, False, None or a mapping)")
        self._defaults: dict[str, Any] = {}
        self._reductions: dict[str, str] = {}

    def add_state(self, name: str, default: Any, reduce: Reduce = "sum") -> None:
        """Declare a running quantity, set it to (a copy of) ``default``.

        Args:
            name: attribute name of the state.
            default: its value after :meth:`reset`: a number, ``None`` ("nothing seen yet", the first value is
                taken as is, so it keeps the batch's device and dtype), a tensor or a list.
            reduce: how two values combine, one of :data:`REDUCTIONS`.
        """
        if not name.isidentifier() or name in self._defaults:
            raise ValueError(f"state name must be a new identifier, got {name!r}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self._defaults[name] = default
        self._reductions[name] = reduce
        setattr(self, name, copy.deepcopy(default))

    def states(self) -> dict[str, Any]:
        """``{name: current value}`` of every declared state, in declaration order."""
        return {name: getattr(self, name) for name in self._defaults}

    def default_states(self) -> dict[str, Any]:
        """``{name: fresh copy of its default}``: what :meth:`reset` restores."""
        return {name: copy.deepcopy(default) for name, default in self._defaults.items()}

    def reset(self) -> None:
        """Forget every batch seen so far: every declared state back to its default."""
        for name, value in self.default_states().items():
            setattr(self, name, value)

    def accumulate(self, **values: Any) -> None:
        """Fold per-batch ``values`` into the states of the same names, each with its declared reduction."""
        for name, value in values.items():
            if name not in self._reductions:
                raise KeyError(f"{type(self).__name__} has no state {name!r}; declared: {', '.join(self._defaults)}")
            setattr(self, name, _combine(self._reductions[name], getattr(self, name), value))

    def merge(self, other: Metric) -> Metric:
        """Fold the state of ``other`` (same class and settings) into this metric; returns ``self``."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        self.accumulate(**other.states())
        return self

    @abc.abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Fold one batch into the running state."""

    @abc.abstractmethod
    def compute(self) -> Any:
        """The metric over every batch since the last :meth:`reset`."""

    def _require_data(self, count: int | Tensor) -> None:
        """Raise a clear error when :meth:`compute` is called with nothing accumulated (``count == 0``)."""
        if int(count) == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update() with a non-empty batch")


def _combine(reduce: str, current: Any, value: Any) -> Any:
    if value is None:
        return current
    if current is None:
        return value
    if reduce == "same":
        return current
    if reduce == "cat":
        return torch.cat([current, value.to(current.device)]) if isinstance(current, Tensor) else current + value
    if isinstance(current, Tensor) and isinstance(value, Tensor):
        value = value.to(current.device)  # a tensor state stays where its first value was
    return current + value


def check_saliency(saliency: Any, images: Tensor, name: str = "saliency") -> Tensor:
    """Validate a ``(B, 1, H, W)`` map matching ``images`` ``(B, C, H, W)``."""
    if not isinstance(saliency, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(saliency).__name__}")
    expected = (images.shape[0], 1, *images.shape[-2:])
    if tuple(saliency.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} to match images, got {tuple(saliency.shape)}")
    return saliency


def check_fractions(values: Sequence[float], name: str) -> tuple[float, ...]:
    """A non-empty tuple of floats in ``[0, 1]``."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError(f"{name} must contain at least one value")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"{name} must be in [0, 1], got {bad}")
    return values


def explainer_from(
    explainer_or_name: Explainer | str,
    model: nn.Module,
    target_layer: Any = None,
    explainer_options: Mapping[str, Any] | None = None,
) -> Explainer:
    """The explainer of a metric or an evaluation: the one place that turns an explainer argument into one.

    Args:
        explainer_or_name: an :class:`Explainer` (returned as is) or a registered name (built on ``model``).
        model: the model a named explainer explains.
        target_layer: layer of a named explainer (``None``: its default).
        explainer_options: options of a named explainer.
    """
    if not isinstance(explainer_or_name, (Explainer, str)):
        # Metrics read the explainer's model and call ``explain``: a plain callable is not enough here.
        raise TypeError(
            f"explainer_or_name must be an Explainer or a registered name, got {type(explainer_or_name).__name__}"
        )
    options = dict(explainer_options or {})
    if target_layer is not None:
        options["target_layer"] = target_layer
    return resolve_explainer(explainer_or_name, model, **options)


def check_model(model: Any) -> nn.Module:
    """``model`` if it is an ``nn.Module`` (TypeError naming the argument otherwise)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def predict(model: nn.Module, images: Tensor, batch_size: int | None = None) -> Tensor:
    """Logits ``(B, K)`` of ``model`` in eval mode without autograd, in chunks of ``batch_size`` images."""
    with isolated(model), torch.no_grad():
        if batch_size is None or images.shape[0] <= batch_size:
            return logits_of(model(images))
        return torch.cat([logits_of(model(chunk)) for chunk in images.split(batch_size)])


def normalisation(mean: Any, std: Any, images: Tensor) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors on ``images``' device (``None``: 0 and 1, pixel inputs)."""
    channels = images.shape[1]

    def as_tensor(value: Any, default: float, name: str) -> Tensor:
        t = torch.as_tensor(default if value is None else value, dtype=images.dtype, device=images.device)
        t = t.reshape(-1)
        if t.numel() not in (1, channels):
            raise ValueError(f"{name} must have 1 or {channels} values (one per channel), got {t.numel()}")
        return t.expand(channels).reshape(1, channels, 1, 1)

    m, s = as_tensor(mean, 0.0, "mean"), as_tensor(std, 1.0, "std")
    if (s <= 0).any():
        raise ValueError("std must be positive")
    return m, s
