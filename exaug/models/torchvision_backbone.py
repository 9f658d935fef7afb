"""Any torchvision classification network as a feature encoder (classifier head removed).

The head is found generically: the last ``nn.Linear`` (or 1x1 ``nn.Conv2d``, as in SqueezeNet) that outputs the
network's class count is replaced by ``nn.Identity``. The pooled feature dimension is then measured with one dummy
forward, so no per-architecture table of head names or feature sizes is needed. For VGG and AlexNet this keeps the
penultimate fully connected layer (4096 features); for ViT, the class token.
"""

from __future__ import annotations

import os
import urllib.error
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

__all__ = ["TorchvisionEncoder", "list_torchvision_models"]

# Constructor options that make a few networks return plain logits (no auxiliary heads) and silence their
# "default initialisation will change" warnings.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
_DEFAULT_NUM_CLASSES = 1000


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


class TorchvisionEncoder(nn.Module):
    """A torchvision classification network without its classifier: ``(B, 3, H, W) -> (B, num_features)``.

    Args:
        name: a torchvision model name (see :func:`list_torchvision_models`), e.g. ``"resnet18"``.
        image_size: side of the square dummy input used to measure ``num_features``; some networks only accept
            certain sizes (ViT: 224), which is reported here rather than at the first training step.
        pretrained: load torchvision's default ImageNet weights. They come from the torch hub cache; when they
            are not cached and cannot be downloaded (offline), a ``RuntimeError`` says where to put the file.

    Attributes:
        backbone: the torchvision network with its head replaced by ``nn.Identity`` (dotted paths for
            explainers start here, e.g. ``backbone.layer4``).
        head_name: dotted path of the removed classifier layer inside ``backbone``.
        num_features: dimension of the pooled features.
    """

    def __init__(self, name: str, image_size: int = 224, pretrained: bool = False) -> None:
        super().__init__()
        valid = list_torchvision_models()
        if name not in valid:
            raise ValueError(f"unknown torchvision model {name!r}; valid names: {', '.join(valid)}")
        self.name = name
        self.backbone = torchvision.models.get_model(name, weights=None, **_BUILD_KWARGS.get(name, {}))
        if pretrained:
            self.backbone.load_state_dict(_load_pretrained_state(name))
        self.head_name = _remove_head(self.backbone, _DEFAULT_NUM_CLASSES)
        self.num_features = self._measure_features(image_size)

    def _measure_features(self, image_size: int) -> int:
        # Eval mode so BatchNorm accepts a single 1x1 sample and its running statistics stay untouched; a freshly
        # built network is entirely in train mode, so train() restores it exactly.
        self.backbone.eval()
        try:
            with torch.no_grad():
                out = self.forward(torch.zeros(1, 3, image_size, image_size))
        except (RuntimeError, ValueError, AssertionError) as err:  # shape checks raise all three
            raise ValueError(
                f"torchvision model {self.name!r} does not accept {image_size}x{image_size} inputs: {err}"
            ) from err
        finally:
            self.backbone.train()
        return out.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W) -> (B, num_features)``."""
        return torch.flatten(self.backbone(x), 1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}, removed_head={self.head_name!r}"
