"""Tiny models of every kind a researcher brings (CNN, torchvision / timm ViT, ConvNeXt, an NHWC stage model) and
pytorch-grad-cam's own reshape transforms for them, written independently of exaug's automatic reading."""

from __future__ import annotations

import torch
from torch import nn


def tv_vit(num_classes: int = 10) -> nn.Module:
    """torchvision ``VisionTransformer`` (image 32, patch 4, 2 layers, hidden 32); the zero head re-initialised."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=num_classes
    )
    nn.init.normal_(model.heads.head.weight, std=0.2)  # torchvision zero-initialises it: every map would be flat
    return model.eval()


def timm_vit(num_classes: int = 10) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2, pretrained=False,
                             num_classes=num_classes).eval()


def timm_convnext(num_classes: int = 10) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=num_classes).eval()


class NHWCStages(nn.Module):
    """A Swin-like model whose stages output channels-last maps ``(B, H, W, C)`` (as timm's Swin stages do)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 16, 4, stride=4)  # 32 -> 8x8
        self.stages = nn.Sequential(NHWCStage(16), NHWCStage(16))
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, 8, 8, 16)
        return self.head(self.stages(x).mean(dim=(1, 2)))


class NHWCStage(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels))
        self.mix = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mix(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(mixed))


def nhwc_stages(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return NHWCStages(num_classes).eval()


# pytorch-grad-cam's tutorial reshape transforms (independent of exaug's automatic rule).
def vit_reshape(tensor: torch.Tensor, height: int = 8, width: int = 8) -> torch.Tensor:
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def nhwc_reshape(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)
