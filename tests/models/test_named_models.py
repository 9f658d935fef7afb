"""Models by name: ``tv:`` ViTs at any image size, ``timm:`` models, query-string model options, the reference
explainer layers, and the trainer end to end on a timm ViT (issue #12)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torchvision

import exaug
from exaug.models import (
    TimmEncoder,
    TorchvisionEncoder,
    create_encoder,
    create_model,
    default_explainer_layer,
    parse_model_name,
)
from exaug.models import torchvision_backbone

TINY_TV_VIT = "tv:vit_b_16?patch_size=4&num_layers=2&hidden_dim=32&num_heads=2&mlp_dim=64"
TINY_TIMM_VIT = "timm:vit_tiny_patch16_224?depth=2&patch_size=4"


# -- names with options --------------------------------------------------------------------------------------


def test_parse_model_name_reads_json_values_and_plain_strings():
    assert parse_model_name("timm:resnet18?drop_rate=0.1&global_pool=avg&features_only=false") == (
        "timm:resnet18", {"drop_rate": 0.1, "global_pool": "avg", "features_only": False})
    assert parse_model_name("tv:vit_b_16") == ("tv:vit_b_16", {})


@pytest.mark.parametrize("name, message", [("resnet18?depth", "key=value"), ("resnet18?a=1&a=2", "given twice"),
                                           ("", "non-empty")])
def test_parse_model_name_rejects_malformed_options(name, message):
    with pytest.raises(ValueError, match=message):
        parse_model_name(name)


def test_options_a_model_does_not_take_are_a_clear_error():
    with pytest.raises(ValueError, match="does not accept the options"):
        create_encoder("tv:resnet18?no_such_option=1")
    with pytest.raises(ValueError, match="in_channels only"):
        create_encoder("resnet18?depth=2")
    assert create_encoder("resnet18?in_channels=1", width=0.0625)(torch.rand(2, 1, 8, 8)).shape == (2, 32)


# -- torchvision ViTs ----------------------------------------------------------------------------------------


def test_create_model_builds_a_torchvision_vit_at_32_pixels():
    model = exaug.create_model("tv:vit_b_16", image_size=32)  # used to fail with "Expected 224"
    assert model.encoder.backbone.image_size == 32 and model.encoder.num_features == 768
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 128)


def test_vit_patch_size_and_depth_options_build_the_requested_architecture():
    model = create_model(TINY_TV_VIT, num_classes=5, image_size=32)
    vit = model.encoder.backbone
    assert (vit.patch_size, len(vit.encoder.layers), vit.hidden_dim) == (4, 2, 32)
    assert vit.encoder.pos_embedding.shape == (1, 8 * 8 + 1, 32)  # an 8x8 token grid plus the class token
    assert model.as_classifier()(torch.rand(3, 3, 32, 32)).shape == (3, 5)


def test_vit_rebuilt_with_its_own_architecture_equals_the_builder():
    # Overriding an architecture option with its default value goes through VisionTransformer directly: the
    # table of builder architectures must then give exactly the builder's network.
    direct = TorchvisionEncoder("vit_b_32", image_size=64, patch_size=32)
    builder = torchvision.models.vit_b_32(image_size=64)
    shapes = {k: v.shape for k, v in builder.state_dict().items() if not k.startswith("heads")}
    assert {k: v.shape for k, v in direct.backbone.state_dict().items()} == shapes


def test_pretrained_vit_at_another_size_gets_interpolated_position_embeddings(monkeypatch):
    state = torchvision.models.vit_b_32().state_dict()  # stands in for the ImageNet weights (no download here)
    monkeypatch.setattr(torchvision_backbone, "_load_pretrained_state", lambda name: state)
    encoder = TorchvisionEncoder("vit_b_32", image_size=64, pretrained=True)
    vit = encoder.backbone
    assert vit.encoder.pos_embedding.shape == (1, 2 * 2 + 1, 768)
    assert torch.equal(vit.conv_proj.weight, state["conv_proj.weight"])
    assert torch.equal(vit.encoder.pos_embedding[:, 0], state["encoder.pos_embedding"][:, 0])  # class token kept
    with pytest.raises(ValueError, match="pretrained weights need the architecture"):
        TorchvisionEncoder("vit_b_32", image_size=64, pretrained=True, patch_size=8)


# -- timm ------------------------------------------------------------------------------------------------------


def test_timm_vit_at_32_pixels_with_options():
    pytest.importorskip("timm")
    encoder = create_encoder(TINY_TIMM_VIT, image_size=32)
    assert isinstance(encoder, TimmEncoder)
    assert encoder.num_features == 192 and len(encoder.backbone.blocks) == 2
    assert encoder.backbone.patch_embed.grid_size == (8, 8)
    assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, 192)


def test_timm_cnn_takes_any_size_without_img_size():
    pytest.importorskip("timm")
    encoder = create_encoder("timm:resnet18", image_size=32)
    assert encoder.num_features == 512 and encoder(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert all(m.training for m in encoder.modules())  # the measuring forward left the train mode alone


def test_timm_errors_name_the_problem(monkeypatch):
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="unknown timm model 'vit_tiny_patch16_22'.*'timm:vit_tiny_patch16_224'"):
        create_encoder("timm:vit_tiny_patch16_22")
    with pytest.raises(ValueError, match="width applies to the CIFAR-stem ResNets only"):
        create_encoder("timm:resnet18", width=0.5)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(ImportError, match=r"exaug\[timm\]"):
        create_encoder("timm:resnet18")


def test_timm_pretrained_offline_is_a_clear_error(monkeypatch):
    pytest.importorskip("timm")
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets: no network attempt
    with pytest.raises(RuntimeError, match="pretrained weights for timm model 'resnet18'.*pretrained=False"):
        create_encoder("timm:resnet18", pretrained=True)


# -- explainer layers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, size, default, reference", [
    ("resnet18", 32, "encoder.layer2.1.conv2", "encoder.layer2.1.conv2"),
    ("resnet50", 32, "encoder.layer2.3.conv3", "encoder.layer2.3.conv3"),
    ("resnet18", 64, "encoder.layer4.1", "encoder.layer4.1.conv2"),
    ("resnet50", 64, "encoder.layer4.2", "encoder.layer4.2.conv3"),
    ("resnet18?in_channels=3", 32, "encoder.layer2.1.conv2", "encoder.layer2.1.conv2"),
])
def test_default_and_reference_layers(name, size, default, reference):
    assert default_explainer_layer(name, size) == default
    assert default_explainer_layer(name, size, preset="reference") == reference
    # Every returned path exists in the classifier model.
    model = create_model(name, num_classes=3, width=0.0625, image_size=size).as_classifier()
    assert {default, reference} <= dict(model.named_modules()).keys()


@pytest.mark.parametrize("name", ["resnet34", "tv:resnet18", "timm:resnet18"])
def test_reference_preset_without_a_reference_layer_is_an_error(name):
    assert default_explainer_layer(name, 32) == ("encoder.layer2" if name == "resnet34" else None)
    with pytest.raises(ValueError, match="reference code has no explanation layer"):
        default_explainer_layer(name, 32, preset="reference")


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="preset must be one of exaug, reference"):
        default_explainer_layer("resnet18", 32, preset="paper")


# -- the trainer on a timm ViT ----------------------------------------------------------------------------------


def test_train_exconb_on_a_timm_vit_end_to_end(tmp_path):
    """``exaug train --model timm:vit_tiny_patch16_224?... --image-size 32 --method exconb`` on synthetic data.

    The explainer is a layer-free one here; Grad-CAM on the ViT's token layers is the token-layer work of
    issue #12 (deliverable 1) and is tested with it.
    """
    pytest.importorskip("timm")
    from exaug.cli import main

    out = tmp_path / "vit"
    argv = ["train", "--model", TINY_TIMM_VIT, "--image-size", "32", "--method", "exconb", "--dataset", "synthetic",
            "--epochs", "1", "--train-samples", "16", "--eval-samples", "8", "--batch-size", "8", "--feat-dim", "16",
            "--explainer", "saliency", "--quiet", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == TINY_TIMM_VIT
    run = exaug.training.load_run(out)  # the name alone rebuilds the same architecture
    assert len(run.model.encoder.backbone.blocks) == 2
