"""Any torchvision classification network as a feature encoder (classifier head removed).

The head is found generically: the last ``nn.Linear`` (or 1x1 ``nn.Conv2d``, as in SqueezeNet) that outputs the
network's class count is replaced by ``nn.Identity``. The pooled feature dimension is then measured with one dummy
forward, so no per-architecture table of head names or feature sizes is needed. For VGG and AlexNet this keeps the
penultimate fully connected layer (4096 features); for ViT, the class token.

Vision transformers are built for the requested image size (torchvision's ``vit_*`` builders take
``image_size``); their architecture options (``patch_size``, ``num_layers``, ``num_heads``, ``hidden_dim``,
``mlp_dim``) can be overridden, e.g. ``patch_size=4`` for 32x32 inputs (8x8 tokens instead of 2x2).
"""

from __future__ import annotations

import os
import urllib.error
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from .backbone import BackboneEncoder

__all__ = ["TorchvisionEncoder", "list_torchvision_models"]

# Constructor options that make a few networks return plain logits (no auxiliary heads) and silence their
# "default initialisation will change" warnings.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
_DEFAULT_NUM_CLASSES = 1000
# The architectures of torchvision's ViT builders (torchvision/models/vision_transformer.py), so that any of them
# can be rebuilt with a different patch size or depth: the builders fix these arguments themselves.
_VIT_ARCH = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")
_VIT_CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "vit_b_16": (16, 12, 12, 768, 3072),
    "vit_b_32": (32, 12, 12, 768, 3072),
    "vit_l_16": (16, 24, 16, 1024, 4096),
    "vit_l_32": (32, 24, 16, 1024, 4096),
    "vit_h_14": (14, 32, 16, 1280, 5120),
}


def list_torchvision_models() -> list[str]:
    """Sorted names of torchvision's classification models (``torchvision.models.list_models``)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _load_pretrained_state(name: str) -> dict[str, Tensor]:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(
            f"pretrained weights for {name!r} are not in the torch hub cache and could not be downloaded ({err}). "
            f"Download {weights.url} on a machine with internet access and copy it to {cache} "
            f"(or set TORCH_HOME to a directory holding checkpoints/{os.path.basename(weights.url)}), "
            "or train from scratch with pretrained=False."
        ) from err


def _remove_head(model: nn.Module, num_classes: int) -> str:
    head = ""
    for module_name, module in model.named_modules():
        out = module.out_features if isinstance(module, nn.Linear) else None
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            out = module.out_channels
        if out == num_classes:
            head = module_name
    if not head:
        raise ValueError(f"could not find a classifier layer with {num_classes} outputs in {type(model).__name__}")
    parent_name, _, child = head.rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())
    return head


def _build_vit(name: str, image_size: int, kwargs: dict[str, Any]) -> nn.Module:
    arch = dict(zip(_VIT_ARCH, _VIT_CONFIGS[name]))
    if not any(key in kwargs for key in _VIT_ARCH):
        return torchvision.models.get_model(name, weights=None, image_size=image_size, **kwargs)
    return VisionTransformer(image_size=image_size, **{**arch, **kwargs})


class TorchvisionEncoder(BackboneEncoder):
    """A torchvision classification network without its classifier: ``(B, 3, H, W) -> (B, num_features)``.

    Args:
        name: a torchvision model name (see :func:`list_torchvision_models`), e.g. ``"resnet18"``.
        image_size: input side. ViTs are built for it (their position embeddings depend on it); every network
            runs one dummy forward at this size to measure ``num_features``, so a size it cannot take is
            reported here rather than at the first training step.
        pretrained: load torchvision's default ImageNet weights. They come from the torch hub cache; when they
            are not cached and cannot be downloaded (offline), a ``RuntimeError`` says where to put the file.
            A ViT at another image size gets its position embeddings interpolated (torchvision's
            ``interpolate_embeddings``); a changed ViT architecture cannot use the weights.
        **model_kwargs: passed to the torchvision builder; for ViTs also the architecture options
            ``patch_size``, ``num_layers``, ``num_heads``, ``hidden_dim``, ``mlp_dim``.

    Attributes:
        backbone: the torchvision network with its head replaced by ``nn.Identity`` (dotted paths for
            explainers start here, e.g. ``backbone.layer4``).
        head_name: dotted path of the removed classifier layer inside ``backbone``.
        num_features: dimension of the pooled features.

    Shape:
        ``(B, 3, H, W) -> (B, num_features)``.

    Example:
        >>> import torch
        >>> vit = TorchvisionEncoder("vit_b_16", image_size=32, patch_size=8, num_layers=1, hidden_dim=32,
        ...                          num_heads=2, mlp_dim=64)
        >>> vit.num_features, vit(torch.rand(2, 3, 32, 32)).shape
        (32, torch.Size([2, 32]))
    """

    def __init__(self, name: str, image_size: int = 224, pretrained: bool = False, **model_kwargs: Any) -> None:
        valid = list_torchvision_models()
        if name not in valid:
            raise ValueError(f"unknown torchvision model {name!r}; valid names: {', '.join(valid)}")
        kwargs = {**_BUILD_KWARGS.get(name, {}), **model_kwargs}
        if name in _VIT_CONFIGS:
            if pretrained and any(key in model_kwargs for key in _VIT_ARCH):
                raise ValueError(f"pretrained weights need the architecture of {name!r}; drop "
                                 f"{sorted(k for k in model_kwargs if k in _VIT_ARCH)} or use pretrained=False")
            backbone = _build_vit(name, image_size, kwargs)
        else:
            backbone = torchvision.models.get_model(name, weights=None, **kwargs)
        if pretrained:
            state = _load_pretrained_state(name)
            if name in _VIT_CONFIGS:  # a no-op at the weights' own size
                state = interpolate_embeddings(image_size, backbone.patch_size, state)
            backbone.load_state_dict(state)
        head_name = _remove_head(backbone, kwargs.get("num_classes", _DEFAULT_NUM_CLASSES))
        super().__init__(backbone, f"torchvision model {name!r}", image_size)
        self.name = name
        self.head_name = head_name

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}, removed_head={self.head_name!r}"
