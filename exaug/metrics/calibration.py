"""Calibration (expected calibration error, reliability diagrams) and adversarial robustness (FGSM, PGD).

ECE with ``n_bins`` equal-width confidence bins ``(lo, hi]`` (Guo et al. 2017; 10 bins in the ExCon paper)::

    ECE = sum_b (n_b / N) * |acc_b - conf_b|        (lower is better)

where confidence is the largest softmax probability and ``acc_b`` / ``conf_b`` are the accuracy and the mean
confidence of the ``n_b`` samples in bin ``b``.

Attacks work in *pixel* space although models take normalised inputs: the batch is un-normalised with
``mean`` / ``std``, perturbed inside the L-infinity ball of radius ``eps`` (4/255 in the ExCon paper), clamped to
``[0, 1]`` and re-normalised. The input gradient is taken with :func:`torch.autograd.grad` inside
:func:`~exaug.utils.isolation.isolated`, so the model's parameters, ``.grad``, buffers and modes are untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.isolation import isolated
from ..utils.outputs import logits_of
from ..utils.checks import check_images, check_labels
from .base import Metric, check_model, normalisation, predict

__all__ = [
    "AdversarialAccuracy",
    "CalibrationError",
    "adversarial_accuracy",
    "expected_calibration_error",
    "fgsm",
    "pgd",
    "plot_reliability",
    "reliability_bins",
]


def _confidence_correct(logits: Tensor, targets: Tensor, from_logits: bool) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a (B, K) tensor, got {getattr(logits, 'shape', type(logits).__name__)}")
    if logits.shape[0] == 0:
        raise ValueError("logits is an empty batch (B = 0)")
    targets = check_labels(targets, logits.shape[0], "targets")
    probs = logits.detach().double().softmax(dim=1) if from_logits else logits.detach().double()
    confidence, predicted = probs.max(dim=1)
    return confidence, predicted.eq(targets.to(predicted.device)).double()


def _bin_sums(confidence: Tensor, correct: Tensor, n_bins: int) -> Tensor:
    """``(3, n_bins)``: count, sum of confidence, sum of correct per bin ``(lo, hi]`` (0 goes to the first bin)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=confidence.device)
    # right=False: edges[i - 1] < x <= edges[i] -> index i; inner edges only, so indices are 0..n_bins-1.
    index = torch.bucketize(confidence, edges[1:-1], right=False)
    sums = torch.zeros(3, n_bins, dtype=torch.float64, device=confidence.device)
    sums[0].index_add_(0, index, torch.ones_like(confidence))
    sums[1].index_add_(0, index, confidence)
    sums[2].index_add_(0, index, correct)
    return sums


def _bins_from_sums(sums: Tensor) -> dict[str, Tensor]:
    count, conf_sum, acc_sum = sums
    n_bins = count.numel()
    safe = count.clamp_min(1)
    nonempty = count > 0
    conf = torch.where(nonempty, conf_sum / safe, torch.zeros_like(conf_sum))
    acc = torch.where(nonempty, acc_sum / safe, torch.zeros_like(acc_sum))
    ece = ((count / count.sum().clamp_min(1)) * (acc - conf).abs()).sum()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=count.device)
    return {"edges": edges, "count": count, "confidence": conf, "accuracy": acc, "ece": ece}


def reliability_bins(
    logits: Tensor, targets: Tensor, n_bins: int = 10, *, from_logits: bool = True
) -> dict[str, Tensor]:
    """Reliability-diagram data.

    Args:
        logits: ``(B, K)`` logits (or probabilities with ``from_logits=False``).
        targets: ``(B,)`` int labels.
        n_bins: number of equal-width confidence bins.
        from_logits: apply softmax first.

    Returns:
        ``{"edges": (n_bins + 1,), "count", "confidence", "accuracy": (n_bins,), "ece": 0-dim}`` (float64;
        empty bins have count 0 and confidence / accuracy 0).
    """
    confidence, correct = _confidence_correct(logits, targets, from_logits)
    return _bins_from_sums(_bin_sums(confidence, correct, n_bins))


def expected_calibration_error(
    logits: Tensor, targets: Tensor, n_bins: int = 10, *, from_logits: bool = True
) -> Tensor:
    """ECE of a batch (0-dim float64 tensor); see the module docstring and :func:`reliability_bins`."""
    return reliability_bins(logits, targets, n_bins, from_logits=from_logits)["ece"]


class CalibrationError(Metric):
    """Streaming ECE: per-bin sums are accumulated, so the result equals the ECE of all samples at once.

    Example:
        >>> import torch
        >>> ece = CalibrationError(n_bins=10)
        >>> ece.update(torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        >>> round(ece.compute(), 4)  # confidence 0.9526, accuracy 0.5
        0.4526

    Args:
        n_bins: equal-width confidence bins.
        from_logits: inputs are logits (softmax applied) rather than probabilities.
    """

    higher_is_better = False

    def __init__(self, n_bins: int = 10, *, from_logits: bool = True) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.from_logits = from_logits
        super().__init__()
        self.add_state("sums", None, "sum")  # (3, n_bins) float64: count, confidence sum, correct sum per bin

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add ``logits`` ``(B, K)`` and ``targets`` ``(B,)``."""
        self.accumulate(sums=_bin_sums(*_confidence_correct(logits, targets, self.from_logits), self.n_bins))

    def bins(self) -> dict[str, Tensor]:
        """Reliability data over every batch (the format of :func:`reliability_bins`)."""
        self._require_data(0 if self.sums is None else self.sums[0].sum())
        assert self.sums is not None
        return _bins_from_sums(self.sums)

    def compute(self) -> float:
        """ECE over every batch since :meth:`reset`."""
        return float(self.bins()["ece"])


def plot_reliability(bins: dict[str, Tensor], path: str | Path, *, title: str | None = None) -> Path:
    """Save a reliability diagram (accuracy per confidence bin against the diagonal) as a PNG.

    Args:
        bins: output of :func:`reliability_bins` or :meth:`CalibrationError.bins`.
        path: output file (parent folders are created).
        title: figure title (default: the ECE).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges = bins["edges"].cpu().numpy()
    acc = bins["accuracy"].cpu().numpy()
    conf = bins["confidence"].cpu().numpy()
    count = bins["count"].cpu().numpy()
    width = edges[1:] - edges[:-1]
    # A Figure without pyplot: no global state, safe in scripts, threads and headless servers.
    fig = Figure(figsize=(4, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
    gap_bottom = [min(a, c) if n > 0 else 0 for a, c, n in zip(acc, conf, count)]
    gap_height = [abs(a - c) if n > 0 else 0 for a, c, n in zip(acc, conf, count)]
    ax.bar(
        edges[:-1], gap_height, bottom=gap_bottom, width=width, align="edge", color="tab:red", alpha=0.3, label="gap"
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title if title is not None else f"ECE = {float(bins['ece']):.4f}")
    ax.legend(loc="upper left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _input_gradient_sign(model: nn.Module, pixels: Tensor, labels: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Sign of d(sum cross-entropy)/d(pixels), the model isolated (eval mode, parameter .grad untouched)."""
    with isolated(model), torch.enable_grad():
        x = pixels.detach().requires_grad_(True)
        loss = F.cross_entropy(logits_of(model((x - mean) / std)), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float = 4 / 255,
    alpha: float = 1 / 255,
    steps: int = 10,
    *,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    random_start: bool = True,
    seed: int | None = 0,
) -> Tensor:
    """L-infinity PGD (Madry et al. 2018) in pixel space on normalised inputs.

    ``x_{t+1} = clip_[0,1](clip_[x-eps, x+eps](x_t + alpha * sign(grad_x CE)))``, starting from ``x`` or, with
    ``random_start``, from ``x + U(-eps, eps)`` (seeded, private generator).

    Args:
        model: normalised images -> logits.
        images: ``(B, C, H, W)`` normalised batch (``(pixels - mean) / std``).
        labels: ``(B,)`` int true labels (the loss that is increased).
        eps: L-infinity radius in pixel units (``[0, 1]`` scale).
        alpha: step size in pixel units.
        steps: iterations.
        mean: per-channel normalisation means (``None``: the inputs are pixels already).
        std: the matching per-channel standard deviations.
        random_start: random start inside the ball.
        seed: seed of the random start (``None``: global RNG).

    Returns:
        ``(B, C, H, W)`` normalised adversarial batch; un-normalised it lies in ``[0, 1]`` and within ``eps`` of
        the (clamped) original. Pixels are only changed where the attack moves them, so ``eps = 0`` returns the
        input unchanged bit for bit when its pixels are in ``[0, 1]``.
    """
    check_model(model)
    check_images(images)
    labels = check_labels(labels, images.shape[0], "labels").to(images.device)
    if eps < 0 or alpha < 0 or steps < 0:
        raise ValueError(f"eps, alpha and steps must be non-negative, got {eps}, {alpha}, {steps}")
    m, s = normalisation(mean, std, images)
    images = images.detach()
    clean = images * s + m
    low, high = (clean - eps).clamp(0, 1), (clean + eps).clamp(0, 1)
    adv = clean
    if random_start and eps > 0:
        generator = None if seed is None else torch.Generator(device=images.device).manual_seed(seed)
        noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        adv = torch.minimum(torch.maximum(clean + (2 * noise - 1) * eps, low), high)
    for _ in range(steps):
        adv = adv + alpha * _input_gradient_sign(model, adv, labels, m, s)
        adv = torch.minimum(torch.maximum(adv, low), high)
    # Re-normalise the *change* only: images + delta / std is exact where delta = 0 (no round trip error).
    return images + (adv - clean) / s


def fgsm(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float = 4 / 255,
    *,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
) -> Tensor:
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps`` in pixel space, clamped to ``[0, 1]``.

    It is :func:`pgd` with one step of size ``eps`` and no random start; arguments as there.

    Returns:
        ``(B, C, H, W)`` normalised adversarial batch.
    """
    return pgd(model, images, labels, eps=eps, alpha=eps, steps=1, mean=mean, std=std, random_start=False)


def _adversarial_correct(
    model: nn.Module, images: Tensor, labels: Tensor, attack: str, attack_options: dict[str, Any]
) -> Tensor:
    """0-dim number of ``images`` still classified as their label after ``attack``: the per-batch update shared
    by :func:`adversarial_accuracy` and :class:`AdversarialAccuracy`."""
    attacks = {"fgsm": fgsm, "pgd": pgd}
    if attack not in attacks:
        raise ValueError(f"attack must be one of {sorted(attacks)}, got {attack!r}")
    adversarial = attacks[attack](model, images, labels, **attack_options)
    return predict(model, adversarial).argmax(dim=1).eq(labels.to(images.device)).sum()


def adversarial_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    attack: Literal["fgsm", "pgd"] = "fgsm",
    **attack_options: Any,
) -> Tensor:
    """Top-1 accuracy (0-dim tensor) of ``model`` on adversarial ``images`` (see :func:`fgsm`, :func:`pgd`)."""
    return _adversarial_correct(model, images, labels, attack, attack_options).double() / images.shape[0]


class AdversarialAccuracy(Metric):
    """Streaming accuracy under an attack.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
        >>> metric = AdversarialAccuracy(model, "fgsm", eps=4 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> metric.update(torch.randn(5, 3, 4, 4), torch.tensor([0, 1, 2, 0, 1]))
        >>> 0.0 <= metric.compute() <= 1.0
        True

    Args:
        model: normalised images -> logits.
        attack: ``"fgsm"`` or ``"pgd"``.
        **attack_options: ``eps``, ``mean``, ``std`` (and ``alpha``, ``steps``, ``random_start``, ``seed`` for PGD).
    """

    higher_is_better = True

    def __init__(self, model: nn.Module, attack: Literal["fgsm", "pgd"] = "fgsm", **attack_options: Any) -> None:
        if attack not in ("fgsm", "pgd"):
            raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
        self.model = check_model(model)
        self.attack = attack
        self.attack_options = attack_options
        super().__init__()
        self.add_state("correct", 0, "sum")
        self.add_state("count", 0, "sum")

    def update(self, images: Tensor, labels: Tensor) -> None:
        """Attack ``images`` ``(B, C, H, W)`` with their true ``labels`` ``(B,)`` and count correct predictions."""
        correct = _adversarial_correct(self.model, images, labels, self.attack, self.attack_options)
        self.accumulate(correct=correct, count=images.shape[0])

    def compute(self) -> float:
        """Accuracy under attack over every batch since :meth:`reset`."""
        self._require_data(self.count)
        return float(self.correct) / self.count
