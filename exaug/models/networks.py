"""The two networks of a training run: encoder + projection head, and a separate linear classifier.

:func:`build_networks` is what :class:`~exaug.training.Trainer` trains and what
:func:`~exaug.training.load_run` rebuilds before loading a checkpoint; both must create the same modules in the
same order (the initialisation draws from the global RNG, so the order fixes the initial weights for a seed).
"""

from __future__ import annotations

from .factory import create_encoder
from .heads import LinearClassifier, SupConModel

__all__ = ["build_networks"]


def build_networks(
    model: str,
    *,
    num_classes: int,
    image_size: int,
    width: float = 1.0,
    head: str = "mlp",
    feat_dim: int = 128,
) -> tuple[SupConModel, LinearClassifier]:
    """Build the encoder + projection head and the linear classifier of a run (on the CPU).

    Unlike :func:`~exaug.models.create_model`, the classifier is *not* attached to the :class:`SupConModel`: the
    trainer gives it its own optimiser and checkpoint entry (``"classifier"``).

    Example:
        >>> import torch
        >>> model, classifier = build_networks("resnet18", num_classes=10, image_size=32, width=0.125, feat_dim=16)
        >>> images = torch.rand(2, 3, 32, 32)
        >>> model(images).shape, classifier(model.encoder(images)).shape
        (torch.Size([2, 16]), torch.Size([2, 10]))

    Args:
        model: encoder name, see :func:`~exaug.models.create_encoder`.
        num_classes: outputs of the linear classifier.
        image_size: input side in pixels.
        width: channel multiplier (CIFAR-stem ResNets).
        head: projection head, ``"mlp"`` or ``"linear"``.
        feat_dim: projection dimension.

    Returns:
        ``(model, classifier)``: a :class:`~exaug.models.SupConModel` (``.encoder`` + ``.head``) and a
        :class:`~exaug.models.LinearClassifier` on the encoder's ``num_features``.

    Raises:
        ValueError: ``num_classes`` is not a positive int, or an invalid encoder/head option.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    encoder = create_encoder(model, width=width, image_size=image_size)
    network = SupConModel(encoder, head=head, feat_dim=feat_dim)
    return network, LinearClassifier(encoder.num_features, num_classes)
