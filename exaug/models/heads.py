"""Projection heads and the modules built around an encoder: SupCon model, linear classifier, image classifier.

In ExCon (Algorithm 1) one encoder is shared by two networks: encoder + projection head, trained with the
contrastive loss, and encoder + linear classifier, trained on frozen features and used for the explanations and
for the "is the masked image still classified correctly" check. :class:`SupConModel` owns the encoder, the head and
(optionally) the linear classifier; :meth:`SupConModel.as_classifier` returns the encoder + classifier view as a
:class:`Classifier` that shares the same modules, which is what explainers consume.
"""

from __future__ import annotations

from typing import Iterator

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LinearClassifier", "Classifier", "SupConModel", "projection_head"]


def _feature_dim(encoder: nn.Module) -> int:
    dim = getattr(encoder, "num_features", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(
            "encoder must expose its pooled feature dimension as an int attribute `num_features` "
            f"(got {dim!r} on {type(encoder).__name__})"
        )
    return dim


def projection_head(kind: str, in_dim: int, feat_dim: int = 128) -> nn.Module:
    """SupContrast's projection heads.

    Args:
        kind: ``"mlp"`` (``Linear(in_dim, in_dim) -> ReLU -> Linear(in_dim, feat_dim)``, e.g. 2048->2048->128 for
            ResNet-50) or ``"linear"`` (``Linear(in_dim, feat_dim)``).
        in_dim: encoder feature dimension.
        feat_dim: projection dimension.
    """
    if feat_dim < 1:
        raise ValueError(f"feat_dim must be a positive int, got {feat_dim!r}")
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, feat_dim))
    if kind == "linear":
        return nn.Linear(in_dim, feat_dim)
    raise ValueError(f"head must be 'mlp' or 'linear', got {kind!r}")


class LinearClassifier(nn.Module):
    """Linear layer on encoder features: ``(B, in_dim) -> (B, num_classes)`` logits.

    Args:
        in_dim: feature dimension.
        num_classes: number of classes.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"in_dim and num_classes must be positive ints, got {in_dim!r} and {num_classes!r}")
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, in_dim) -> (B, num_classes)``."""
        return self.fc(features)


class Classifier(nn.Module):
    """Images to logits: ``classifier(encoder(x))``, ``(B, 3, H, W) -> (B, num_classes)``.

    The model explainers consume; dotted layer paths start at ``encoder`` (e.g. ``"encoder.layer2.1.conv2"``).

    Args:
        encoder: maps images to pooled features ``(B, D)``.
        classifier: maps ``(B, D)`` features to logits, e.g. a :class:`LinearClassifier`.
    """

    def __init__(self, encoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, num_classes)``."""
        return self.classifier(self.encoder(x))


class SupConModel(nn.Module):
    """Encoder + projection head returning L2-normalised embeddings (SupContrast's ``SupConResNet``).

    Args:
        encoder: maps images to pooled features ``(B, D)`` and exposes ``num_features = D``.
        head: ``"mlp"`` or ``"linear"`` (see :func:`projection_head`).
        feat_dim: projection dimension.
        num_classes: when given, a :class:`LinearClassifier` ``D -> num_classes`` is created as ``.classifier``
            (ExCon's co-trained classifier); ``None`` leaves ``.classifier`` as ``None``.

    Attributes:
        encoder, head, classifier: the submodules. Train ``encoder`` and ``head`` with the contrastive loss
            (:meth:`contrastive_parameters`) and ``classifier`` on frozen features: one optimiser over
            ``model.parameters()`` would also decay the classifier's weights during the contrastive stage.
    """

    def __init__(
        self, encoder: nn.Module, head: str = "mlp", feat_dim: int = 128, num_classes: int | None = None
    ) -> None:
        super().__init__()
        dim = _feature_dim(encoder)
        self.encoder = encoder
        self.head = projection_head(head, dim, feat_dim)
        self.feat_dim = feat_dim
        self.classifier = LinearClassifier(dim, num_classes) if num_classes is not None else None

    def forward(self, x: Tensor) -> Tensor:
        """L2-normalised projections: ``(B, 3, H, W) -> (B, feat_dim)``."""
        return F.normalize(self.head(self.encoder(x)), dim=1)

    def contrastive_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``encoder`` and ``head`` (what the contrastive optimiser updates)."""
        yield from self.encoder.parameters()
        yield from self.head.parameters()

    def as_classifier(self) -> Classifier:
        """A :class:`Classifier` view (images -> logits) sharing this model's ``encoder`` and ``classifier``.

        The view holds the same module objects, so it follows ``.to(device)``, training and loading of this model.

        Raises:
            ValueError: the model was built without ``num_classes``.
        """
        if self.classifier is None:
            raise ValueError("this SupConModel has no classifier: build it with num_classes=<number of classes>")
        return Classifier(self.encoder, self.classifier)
