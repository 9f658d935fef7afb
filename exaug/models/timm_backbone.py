"""Any timm model as a feature encoder (``timm:<name>``), with timm as the optional extra ``exaug[timm]``.

timm builds every model without its classifier when asked for ``num_classes=0``; the forward then returns the
pooled pre-logits features ``(B, D)`` (global pooling for CNNs, the class token or the token mean for ViTs).
Weights are never downloaded unless ``pretrained=True`` is asked for.
"""

from __future__ import annotations

import difflib
from types import ModuleType
from typing import Any

from torch import nn

from .backbone import BackboneEncoder

__all__ = ["TimmEncoder", "import_timm"]

TIMM_EXTRA = "pip install 'exaug[timm]' (or: pip install 'timm>=0.9')"


def import_timm() -> ModuleType:
    """The ``timm`` module, or an ``ImportError`` naming the optional extra that installs it."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(f"timm models ('timm:<name>') need the optional dependency timm: {TIMM_EXTRA}") from err
    return timm


def _build(timm: ModuleType, name: str, image_size: int, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr('timm:' + c) for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {name!r}.{hint} (see timm.list_models())")
    options = {"pretrained": pretrained, "num_classes": 0, **kwargs}
    if "img_size" not in kwargs:
        # Token models (ViT, DeiT, Swin, ...) are built for one input size (their position embeddings); CNNs take
        # any size and their constructors reject `img_size`, so it is passed only where it is accepted.
        try:
            return timm.create_model(name, img_size=image_size, **options)
        except TypeError as err:
            if "img_size" not in str(err):
                raise
    return timm.create_model(name, **options)


class TimmEncoder(BackboneEncoder):
    """A timm model without its classifier: ``(B, 3, H, W) -> (B, num_features)``.

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``"vit_tiny_patch16_224"`` or ``"resnet18"``.
        image_size: input side; token models are built for it (``img_size``), and a dummy forward at this size
            measures ``num_features``.
        pretrained: load timm's pretrained weights (from the Hugging Face cache or the network). Offline and not
            cached, a ``RuntimeError`` says so; the default ``False`` never touches the network.
        **model_kwargs: passed to ``timm.create_model`` (e.g. ``depth=2``, ``patch_size=4``, ``embed_dim=64``).

    Attributes:
        backbone: the timm model built with ``num_classes=0`` (dotted paths for explainers start here, e.g.
            ``encoder.backbone.blocks.1.norm1``).
        name: the timm model name.
        num_features: dimension of the pooled features.

    Shape:
        ``(B, 3, H, W) -> (B, num_features)``.

    Example:
        >>> import torch
        >>> encoder = TimmEncoder("vit_tiny_patch16_224", image_size=32, patch_size=8, depth=1)
        >>> encoder.num_features, encoder(torch.rand(2, 3, 32, 32)).shape
        (192, torch.Size([2, 192]))
    """

    def __init__(self, name: str, image_size: int = 224, pretrained: bool = False, **model_kwargs: Any) -> None:
        timm = import_timm()
        try:
            backbone = _build(timm, name, image_size, pretrained, model_kwargs)
        except OSError as err:  # huggingface_hub's offline and not-found errors are OSErrors
            if not pretrained:
                raise
            raise RuntimeError(
                f"pretrained weights for timm model {name!r} are not in the Hugging Face cache and could not be "
                f"downloaded ({type(err).__name__}: {err}). Download them on a machine with internet access "
                "(timm.create_model(name, pretrained=True) fills ~/.cache/huggingface, or set HF_HOME), or train "
                "from scratch with pretrained=False."
            ) from err
        super().__init__(backbone, f"timm model {name!r}", image_size)
        self.name = name

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"
