"""Classification accuracy: top-k from logits, weighted kNN on embeddings, and a linear probe.

* :func:`topk_accuracy` / :class:`Accuracy`: share of samples whose label is among the ``k`` largest logits.
* :func:`knn_accuracy`: the weighted kNN monitor of contrastive learning (Wu et al. 2018, used by SupContrast-style
  code): cosine similarities to the training embeddings, the ``k`` nearest vote with weight ``exp(sim / T)``.
* :func:`linear_probe`: multinomial logistic regression on frozen features, full batch, deterministic.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.checks import check_labels
from .base import Metric

__all__ = ["Accuracy", "knn_accuracy", "linear_probe", "topk_accuracy"]


def _check_ks(ks: int | Sequence[int]) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {ks}")
    return ks


def _topk_correct(logits: Tensor, targets: Tensor, ks: tuple[int, ...]) -> Tensor:
    """``(len(ks),)`` number of samples whose target is in the top k, for each k."""
    num_classes = logits.shape[1]
    kmax = min(max(ks), num_classes)
    top = logits.topk(kmax, dim=1).indices  # (B, kmax), sorted by decreasing logit
    hit = top.eq(targets.unsqueeze(1))
    # Cumulative hits: hit_upto[:, j] is True when the target is among the first j + 1 predictions. A k above the
    # number of classes counts every sample (the target is always among all the classes).
    hit_upto = hit.cumsum(dim=1).clamp_(max=1)
    cols = torch.tensor([min(k, kmax) - 1 for k in ks], device=logits.device)
    return hit_upto.index_select(1, cols).sum(dim=0)


def _check_logits(logits: Tensor, targets: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a (B, K) tensor, got {getattr(logits, 'shape', type(logits).__name__)}")
    if logits.shape[0] == 0:
        raise ValueError("logits is an empty batch (B = 0)")
    return check_labels(targets, logits.shape[0], "targets")


def topk_accuracy(logits: Tensor, targets: Tensor, ks: int | Sequence[int] = (1, 5)) -> dict[int, Tensor]:
    """Top-k accuracy of a batch.

    Args:
        logits: ``(B, K)`` scores (logits or probabilities, only the order matters).
        targets: ``(B,)`` int class indices.
        ks: one k or several; a k larger than ``K`` gives 1.

    Returns:
        ``{k: 0-dim tensor in [0, 1]}``.
    """
    targets = _check_logits(logits, targets)
    ks = _check_ks(ks)
    correct = _topk_correct(logits.detach(), targets, ks).double() / logits.shape[0]
    return {k: correct[i] for i, k in enumerate(ks)}


class Accuracy(Metric):
    """Streaming top-k accuracy; the same per-batch counts as :func:`topk_accuracy`.

    Example:
        >>> import torch
        >>> acc = Accuracy(ks=(1, 2))
        >>> acc.update(torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]))
        >>> acc.update(torch.tensor([[0.0, 3.0, 1.0]]), torch.tensor([2]))
        >>> acc.compute()  # top-1: 1 of 3 right; top-2: 3 of 3
        {1: 0.3333333333333333, 2: 1.0}

    Args:
        ks: the k values reported.
    """

    higher_is_better = True

    def __init__(self, ks: int | Sequence[int] = (1, 5)) -> None:
        self.ks = _check_ks(ks)
        super().__init__()
        self.add_state("correct", None, "sum")  # (len(ks),) number of hits per k, on the batches' device
        self.add_state("total", 0, "sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add a batch: ``logits`` ``(B, K)``, ``targets`` ``(B,)``."""
        targets = _check_logits(logits, targets)
        self.accumulate(correct=_topk_correct(logits.detach(), targets, self.ks), total=logits.shape[0])

    def compute(self) -> dict[int, float]:
        """``{k: accuracy}`` over every batch since :meth:`reset`."""
        self._require_data(self.total)
        assert self.correct is not None
        return {k: c / self.total for k, c in zip(self.ks, self.correct.tolist())}


def _check_features(feats: Tensor, labels: Tensor, name: str) -> Tensor:
    if not isinstance(feats, Tensor) or feats.dim() != 2:
        raise ValueError(f"{name}_feats must be a (N, D) tensor, got {getattr(feats, 'shape', type(feats).__name__)}")
    if feats.shape[0] == 0:
        raise ValueError(f"{name}_feats is empty (N = 0)")
    return check_labels(labels, feats.shape[0], f"{name}_labels")


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    *,
    num_classes: int | None = None,
    chunk_size: int = 256,
) -> Tensor:
    """Weighted kNN top-1 accuracy on L2-normalised embeddings.

    For each test embedding, the ``k`` training embeddings of highest cosine similarity ``s`` vote for their
    label with weight ``exp(s / temperature)``; the class with the largest total wins (Wu et al. 2018).
    Test rows are processed in chunks, so memory is ``O(chunk_size * N_train)``.

    Args:
        train_feats: ``(N, D)`` embeddings (normalised here).
        train_labels: ``(N,)`` int labels.
        test_feats: ``(M, D)`` embeddings.
        test_labels: ``(M,)`` int labels.
        k: neighbours (capped at ``N``).
        temperature: vote temperature.
        num_classes: number of classes (default: ``max(label) + 1`` over both sets).
        chunk_size: test rows per similarity block.

    Returns:
        0-dim tensor, accuracy in ``[0, 1]``.
    """
    train_labels = _check_features(train_feats, train_labels, "train")
    test_labels = _check_features(test_feats, test_labels, "test")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train_feats and test_feats differ in dimension: {train_feats.shape[1]} vs {test_feats.shape[1]}"
        )
    if k < 1 or temperature <= 0 or chunk_size < 1:
        raise ValueError(f"k and chunk_size must be >= 1 and temperature > 0, got {k}, {chunk_size}, {temperature}")
    if num_classes is None:
        num_classes = int(torch.maximum(train_labels.max(), test_labels.max())) + 1
    k = min(k, train_feats.shape[0])
    bank = F.normalize(train_feats.detach().float(), dim=1)
    train_labels = train_labels.to(bank.device)
    correct = torch.zeros((), dtype=torch.long, device=bank.device)
    for feats, labels in zip(test_feats.split(chunk_size), test_labels.split(chunk_size)):
        sims = F.normalize(feats.detach().float().to(bank.device), dim=1) @ bank.T  # (m, N)
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(feats.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sims / temperature).exp())
        correct += votes.argmax(dim=1).eq(labels.to(bank.device)).sum()
    return correct.double() / test_feats.shape[0]


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int | None = None,
    weight_decay: float = 1e-4,
    max_iter: int = 100,
) -> Tensor:
    """Top-1 accuracy of a linear classifier fitted on frozen features.

    Multinomial logistic regression with L2 penalty, fitted full batch with L-BFGS from a zero initialisation:
    the problem is convex and the start is fixed, so the result is deterministic (no seed needed). Features are
    standardised with the training mean and std.

    Args:
        train_feats: ``(N, D)``; train_labels: ``(N,)``; test_feats: ``(M, D)``; test_labels: ``(M,)``.
        num_classes: default ``max(label) + 1`` over both sets.
        weight_decay: L2 penalty on the weights (``0.5 * wd * |W|^2`` added to the mean cross-entropy).
        max_iter: L-BFGS iterations.

    Returns:
        0-dim tensor, test accuracy in ``[0, 1]``.
    """
    train_labels = _check_features(train_feats, train_labels, "train")
    test_labels = _check_features(test_feats, test_labels, "test")
    if num_classes is None:
        num_classes = int(torch.maximum(train_labels.max(), test_labels.max())) + 1
    x = train_feats.detach().float()
    mu, sd = x.mean(0, keepdim=True), x.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    x = (x - mu) / sd
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    y = train_labels.to(x.device)

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        xt = (test_feats.detach().float().to(x.device) - mu) / sd
        pred = (xt @ weight.T + bias).argmax(dim=1)
    return pred.eq(test_labels.to(x.device)).double().mean()
