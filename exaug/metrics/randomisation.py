"""The model-parameter randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

An explanation that describes the *model* must change when the model's parameters are destroyed. The check
re-initialises the layers one by one **from the top** (the output layer first) and, after each step, compares
the new maps of the same images (for the same classes) with the original ones:

* ``order="cascading"`` (the paper's main test): the randomisation accumulates, step ``l`` has every layer from
  the top down to ``l`` randomised; ``"independent"``: step ``l`` randomises only layer ``l``;
* similarity, per image: **Spearman rank correlation** of the two maps (Quantus' ``MPRT`` default; ties get
  average ranks, as SciPy's) and **SSIM** (scikit-image's ``structural_similarity`` defaults: 7x7 uniform
  window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, data range = the two maps' joint range, as Quantus
  passes it). Two identical maps have similarity 1; Spearman is NaN when exactly one of them is constant (a
  rank correlation is undefined there), and means skip NaNs (``undefined`` counts them).

Lower similarity is better: a map that stays similar to the original while the network is random does not
depend on what the network learnt. A model-free explainer (e.g. ``spectral_residual``) scores 1 at every step.

The work happens on a deep copy of the explainer (and the model it holds): the user's model, its gradients and
the global random state are never touched. Each layer is re-initialised with its own ``reset_parameters`` (its
default initialisation, like the paper and Quantus) inside a forked RNG seeded with ``seed`` before every layer,
Quantus' policy (``seed + 1`` there): the same seed gives the same random network.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explainers import Explainer
from .base import Metric, check_model, explainer_from

__all__ = [
    "ORDERS",
    "SIMILARITIES",
    "ModelParameterRandomisation",
    "RandomisationCurve",
    "model_parameter_randomisation",
    "randomisation_steps",
    "spearman_correlation",
    "ssim",
]

#: ``order`` values: cumulative randomisation from the top, or one layer at a time.
ORDERS: tuple[str, ...] = ("cascading", "independent")


def _rows(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"maps must have the same (B, ...) shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.detach().flatten(1).double(), b.detach().flatten(1).double()


def _average_ranks(x: Tensor) -> Tensor:
    """``(B, N)`` 1-based ranks along dim 1, tied values sharing their average rank (SciPy's ``rankdata``)."""
    ordered = x.sort(dim=1).values
    below = torch.searchsorted(ordered, x, right=False)  # values strictly smaller
    up_to = torch.searchsorted(ordered, x, right=True)  # values smaller or equal
    return (below + up_to + 1).double() / 2


def _identical(a: Tensor, b: Tensor) -> Tensor:
    return (a == b).all(dim=1)


def spearman_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of two batches of maps (1 for identical maps, NaN for one constant map).

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
        >>> spearman_correlation(a, torch.tensor([[10.0, 20.0, 25.0, 99.0], [4.0, 3.0, 2.0, 1.0]])).tolist()
        [1.0, -1.0]

    Shape:
        - a, b: ``(B, ...)``; output: ``(B,)`` float64.
    """
    x, y = _rows(a, b)
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(dim=1, keepdim=True), ry - ry.mean(dim=1, keepdim=True)
    denom = (rx.square().sum(dim=1) * ry.square().sum(dim=1)).sqrt()
    rho = (rx * ry).sum(dim=1) / denom  # NaN (0 / 0) when a map is constant
    return torch.where(_identical(x, y), torch.ones_like(rho), rho)


def ssim(a: Tensor, b: Tensor, win_size: int = 7) -> Tensor:
    """Per-image structural similarity, scikit-image's ``structural_similarity`` with its defaults and
    ``data_range`` = the joint range of the two maps (as Quantus calls it); 1 for identical maps.

    Example:
        >>> import torch
        >>> a = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> ssim(a, a).tolist(), bool(ssim(a, 1 - a)[0] < 0)
        ([1.0, 1.0], True)

    Shape:
        - a, b: ``(B, 1, H, W)`` with ``H, W >= win_size``; output: ``(B,)`` float64.
    """
    if a.dim() != 4 or a.shape[1] != 1 or a.shape != b.shape:
        raise ValueError(f"ssim takes two (B, 1, H, W) batches of the same shape, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"maps of {tuple(a.shape[-2:])} are smaller than the SSIM window (win_size={win_size})")
    x, y = a.detach().double(), b.detach().double()
    both = torch.cat([x.flatten(1), y.flatten(1)], dim=1)
    data_range = (both.amax(dim=1) - both.amin(dim=1)).view(-1, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # Means over every full window (scikit-image filters the whole image, then crops the half-window border,
    # which leaves exactly these "valid" windows).
    mean = lambda t: F.avg_pool2d(t, win_size, stride=1)  # noqa: E731
    n = win_size**2
    ux, uy = mean(x), mean(y)
    vx = (mean(x * x) - ux * ux) * n / (n - 1)
    vy = (mean(y * y) - uy * uy) * n / (n - 1)
    vxy = (mean(x * y) - ux * uy) * n / (n - 1)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    value = s.mean(dim=(1, 2, 3))
    return torch.where(_identical(x.flatten(1), y.flatten(1)), torch.ones_like(value), value)


#: Similarity measures by name: ``f(maps (B, 1, H, W), maps (B, 1, H, W)) -> (B,)``.
SIMILARITIES: dict[str, Any] = {"spearman": spearman_correlation, "ssim": ssim}


def _resettable(module: nn.Module) -> bool:
    """A module that owns parameters or buffers and can re-initialise them (Conv, Linear, BatchNorm, ...)."""
    own = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))
    return own and callable(getattr(module, "reset_parameters", None))


def randomisation_steps(model: nn.Module, depth: int | None = None) -> list[str]:
    """The steps of the check, top first: names of the re-initialisable modules, or of their groups.

    Args:
        model: the explained model.
        depth: ``None``: one step per re-initialisable module (Quantus' layers); ``k``: one step per module
            path cut to its first ``k`` components (``depth=2`` on an exaug classifier: ``classifier.linear``,
            ``encoder.layer4``, ..., ``encoder.conv1``).

    Returns:
        Dotted module names, the module registered last (nearest the output) first.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), nn.Flatten(),
        ...                       nn.LazyLinear(2))
        >>> randomisation_steps(model), randomisation_steps(model, depth=1)
        (['2', '0.1', '0.0'], ['2', '0'])
    """
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    names = [name for name, module in check_model(model).named_modules() if name and _resettable(module)]
    if depth is not None:
        names = list(dict.fromkeys(".".join(name.split(".")[:depth]) for name in names))
    if not names:
        raise ValueError("the model has no layer with parameters to randomise")
    return names[::-1]


def _randomise(model: nn.Module, step: str, seed: int) -> None:
    """Re-initialise every resettable module under ``step`` (top first), each from a fresh ``seed``."""
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    modules = [m for m in model.get_submodule(step).modules() if _resettable(m)][::-1]
    with torch.random.fork_rng(devices=cuda), torch.no_grad():  # the global RNG is left as it was
        for module in modules:
            torch.manual_seed(seed)
            module.reset_parameters()


@dataclasses.dataclass
class RandomisationCurve:
    """Result of :func:`model_parameter_randomisation`.

    Attributes:
        steps: randomised layers (or groups), top first.
        similarity: ``{measure: (L, B) float64}``, the similarity of each image's map after step ``l`` with its
            original map.
        targets: ``(B,)`` the classes explained (the same at every step).
    """

    steps: list[str]
    similarity: dict[str, Tensor]
    targets: Tensor


def model_parameter_randomisation(
    explainer_or_name: Explainer | str,
    model: nn.Module,
    images: Tensor,
    targets: Any = None,
    *,
    steps: Sequence[str] | None = None,
    depth: int | None = None,
    order: str = "cascading",
    measures: Sequence[str] = ("spearman", "ssim"),
    seed: int = 0,
    target_layer: Any = None,
    explainer_options: Mapping[str, Any] | None = None,
) -> RandomisationCurve:
    """Similarity of each image's map to its original while the model's layers are randomised from the top.

    Args:
        explainer_or_name: an :class:`~exaug.explainers.Explainer` bound to ``model``, or a registered name.
        model: the explained model (never modified: the check runs on a deep copy).
        images: ``(B, C, H, W)`` images.
        targets: classes to explain (default: the original model's predictions); kept at every step.
        steps: module names to randomise, in this order (default: :func:`randomisation_steps` at ``depth``).
        depth: grouping of the default steps (see :func:`randomisation_steps`).
        order: ``"cascading"`` or ``"independent"`` (see the module docstring).
        measures: names from :data:`SIMILARITIES`.
        seed: seed of the random re-initialisation.
        target_layer: layer of a named explainer.
        explainer_options: options of a named explainer.

    Returns:
        A :class:`RandomisationCurve`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
        ...                       nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> curve = model_parameter_randomisation("gradcam", model, images, steps=["6", "2"],
        ...                                       target_layer="2", measures=("spearman",))
        >>> curve.steps, tuple(curve.similarity["spearman"].shape)
        (['6', '2'], (2, 2))

    Shape:
        - images: ``(B, C, H, W)``; similarity values: ``(len(steps), B)``; targets: ``(B,)``.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    unknown = [m for m in measures if m not in SIMILARITIES]
    if unknown or not measures:
        raise ValueError(f"measures must be a non-empty selection of {tuple(SIMILARITIES)}, got {tuple(measures)}")
    explainer = explainer_from(explainer_or_name, check_model(model), target_layer, explainer_options)
    steps = randomisation_steps(explainer.model, depth) if steps is None else [str(s) for s in steps]
    for step in steps:
        explainer.model.get_submodule(step)  # an unknown name fails before any work, naming the module
    original = explainer.explain(images, targets)
    # The copy holds its own model (deepcopy keeps the explainer's layer pointing into the copied model).
    pristine = copy.deepcopy(explainer)
    work = copy.deepcopy(pristine) if order == "independent" else pristine
    scores: dict[str, list[Tensor]] = {m: [] for m in measures}
    for step in steps:
        if order == "independent":
            work.model.load_state_dict(pristine.model.state_dict())
        _randomise(work.model, step, seed)
        maps = work.explain(images, original.targets).saliency
        for m in measures:
            scores[m].append(SIMILARITIES[m](original.saliency, maps))
    return RandomisationCurve(steps, {m: torch.stack(v) for m, v in scores.items()}, original.targets)


class ModelParameterRandomisation(Metric):
    """Streaming mean similarity per randomisation step (see :func:`model_parameter_randomisation`).

    The steps (:attr:`steps`, top first) are fixed when the metric is built; every :meth:`update` randomises a fresh copy with the same
    seed, so every batch sees the same random networks.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        ...                       nn.Linear(4, 2))
        >>> metric = ModelParameterRandomisation("spectral_residual", model)  # model-free: never changes
        >>> metric.update(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
        >>> metric.compute()["spearman"]
        [1.0, 1.0]
    """

    higher_is_better: Mapping[str, bool | None] = {m: False for m in SIMILARITIES}

    def __init__(
        self,
        explainer_or_name: Explainer | str,
        model: nn.Module,
        *,
        steps: Sequence[str] | None = None,
        depth: int | None = None,
        order: str = "cascading",
        measures: Sequence[str] = ("spearman", "ssim"),
        seed: int = 0,
        target_layer: Any = None,
        explainer_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.explainer = explainer_from(explainer_or_name, check_model(model), target_layer, explainer_options)
        self.steps = randomisation_steps(self.explainer.model, depth) if steps is None else [str(s) for s in steps]
        self.order, self.measures, self.seed = order, tuple(measures), seed
        self.add_state("sums", 0.0, "sum")  # (M, L) float64: similarity sums, NaN left out
        self.add_state("defined", 0, "sum")  # (M, L): how many similarities were defined
        self.add_state("count", 0, "sum")  # images

    def update(self, images: Tensor, targets: Any = None) -> None:
        """Fold a batch of images ``(B, C, H, W)`` in (``targets``: default the predicted classes)."""
        curve = model_parameter_randomisation(self.explainer, self.explainer.model, images, targets,
                                              steps=self.steps, order=self.order, measures=self.measures,
                                              seed=self.seed)
        values = torch.stack([curve.similarity[m] for m in self.measures])  # (M, L, B)
        known = ~values.isnan()
        self.accumulate(sums=torch.where(known, values, torch.zeros_like(values)).sum(dim=2),
                        defined=known.sum(dim=2), count=images.shape[0])

    def compute(self) -> dict[str, Any]:
        """``{measure: [mean per step], "undefined": {measure: [count per step]}, "images": n}``, the steps in
        the order of :attr:`steps`."""
        self._require_data(self.count)
        means = (self.sums / self.defined).tolist()  # NaN where no image had a defined similarity
        undefined = (self.count - self.defined).tolist()
        return {**dict(zip(self.measures, means)),
                "undefined": dict(zip(self.measures, undefined)), "images": int(self.count)}
