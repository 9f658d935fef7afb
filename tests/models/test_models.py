"""Contract tests of exaug.models: shapes, widths, heads, layer paths, factory errors, torchvision backbones."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug.models import (
    Classifier,
    LinearClassifier,
    SupConModel,
    TorchvisionEncoder,
    create_encoder,
    create_model,
    default_explainer_layer,
    list_models,
)

CIFAR_NAMES = ["resnet18", "resnet34", "resnet50"]
EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", CIFAR_NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_cifar_resnet_shapes(name: str, size: int) -> None:
    model = create_model(name, num_classes=7, width=0.25, image_size=size)
    feat = 128 * EXPANSION[name]  # 512 * 0.25 stage-4 channels, x4 for the bottleneck
    assert model.encoder.num_features == feat
    x = torch.rand(2, 3, size, size)
    assert model.encoder(x).shape == (2, feat)
    assert model.encoder.forward_features(x).shape == (2, feat, size // 8, size // 8)
    z = model(x)
    assert z.shape == (2, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    assert model.as_classifier()(x).shape == (2, 7)


def test_width_quarter_channels() -> None:
    enc = create_encoder("resnet18", width=0.25)
    assert enc.conv1.out_channels == 16
    assert [enc.get_submodule(f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert create_encoder("resnet18", width=0.001).conv1.out_channels == 1  # at least one channel


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_parameter_count_scales_with_width(name: str) -> None:
    full = n_params(create_encoder(name, width=1.0))
    half = n_params(create_encoder(name, width=0.5))
    quarter = n_params(create_encoder(name, width=0.25))
    # Convolutions dominate and scale with width^2 (BatchNorm and the 3-channel stem scale linearly).
    assert 3.8 < full / half < 4.05 and 3.8 < half / quarter < 4.05
    if name == "resnet18":
        assert full == 11_168_832  # same as SupContrast's CIFAR ResNet-18 encoder


def test_reference_dimensions_resnet50_head() -> None:
    model = create_model("resnet50", num_classes=100)
    assert model.encoder.num_features == 2048
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 2048), (2048, 128)]
    assert model.classifier.fc.in_features == 2048 and model.classifier.fc.out_features == 100


def test_linear_head_and_feat_dim() -> None:
    model = create_model("resnet18", num_classes=3, width=0.25, head="linear", feat_dim=32)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 32
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 32)
    with pytest.raises(ValueError, match="head must be 'mlp' or 'linear'"):
        create_model("resnet18", num_classes=3, width=0.25, head="conv")


def test_classifier_view_shares_modules() -> None:
    model = create_model("resnet18", num_classes=5, width=0.25)
    clf = model.as_classifier()
    assert isinstance(clf, Classifier)
    assert clf.encoder is model.encoder and clf.classifier is model.classifier
    contrastive = {id(p) for p in model.contrastive_parameters()}
    assert contrastive.isdisjoint(id(p) for p in model.classifier.parameters())
    assert len(contrastive) + len(list(model.classifier.parameters())) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="num_classes"):
        SupConModel(create_encoder("resnet18", width=0.25)).as_classifier()


def test_generic_modules() -> None:
    enc = create_encoder("resnet18", width=0.25)
    clf = Classifier(enc, LinearClassifier(enc.num_features, 4))
    assert clf(torch.rand(3, 3, 32, 32)).shape == (3, 4)
    with pytest.raises(ValueError, match="num_features"):
        SupConModel(nn.Flatten())


@pytest.mark.parametrize("name", CIFAR_NAMES)
@pytest.mark.parametrize("size", [32, 64])
def test_default_explainer_layer_exists(name: str, size: int) -> None:
    clf = create_model(name, num_classes=10, width=0.25, image_size=size).as_classifier()
    path = default_explainer_layer(name, size)
    modules = dict(clf.named_modules())
    assert path in modules
    if size == 64:
        assert modules[path] is clf.encoder.layer4[-1]


def test_default_explainer_layer_reference_paths() -> None:
    assert default_explainer_layer("resnet18", 32) == "encoder.layer2.1.conv2"
    assert default_explainer_layer("resnet50", 32) == "encoder.layer2.3.conv3"
    assert default_explainer_layer("resnet34", 32) == "encoder.layer2"
    assert default_explainer_layer("resnet50", 64) == "encoder.layer4.2"
    assert default_explainer_layer("tv:resnet18", 224) is None
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        default_explainer_layer("resnet05", 32)


def test_reference_layer_map_is_16x16() -> None:
    clf = create_model("resnet50", num_classes=10, width=0.25).as_classifier()
    seen: dict[str, torch.Size] = {}

    def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen["shape"] = output.shape

    handle = clf.get_submodule(default_explainer_layer("resnet50", 32)).register_forward_hook(record)
    clf.eval()
    with torch.no_grad():
        clf(torch.rand(1, 3, 32, 32))
    handle.remove()
    assert seen["shape"][-2:] == (16, 16)


def test_unknown_model_names() -> None:
    with pytest.raises(ValueError) as info:
        create_model("resnet81", num_classes=10)
    message = str(info.value)
    assert "Did you mean 'resnet18'?" in message
    assert all(name in message for name in list_models())
    with pytest.raises(ValueError, match="Did you mean 'tv:resnet18'"):
        create_model("tv:resnt18", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="width"):
        create_model("resnet18", num_classes=10, width=0)
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("resnet18", num_classes=10, pretrained=True)


def test_list_models() -> None:
    assert list_models() == CIFAR_NAMES
    assert "tv:resnet18" in list_models(include_torchvision=True)


def test_torchvision_resnet18_backbone() -> None:
    model = create_model("tv:resnet18", num_classes=10, image_size=64)
    enc = model.encoder
    assert isinstance(enc, TorchvisionEncoder)
    assert enc.head_name == "fc" and enc.num_features == 512
    assert isinstance(enc.backbone.fc, nn.Identity)
    assert all(m.training for m in model.modules())  # the dummy forward left train mode on
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, 128)
    assert model.as_classifier()(x).shape == (2, 10)
    assert "encoder.backbone.layer4" in dict(model.as_classifier().named_modules())
    with pytest.raises(ValueError, match="width"):
        create_model("tv:resnet18", num_classes=10, width=0.5)


def test_torchvision_head_without_linear_name() -> None:
    # MobileNetV3's head is classifier.3 inside a Sequential; detection is generic.
    enc = TorchvisionEncoder("mobilenet_v3_small", image_size=32)
    assert enc.head_name == "classifier.3" and enc.num_features == 1024
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 1024)


def test_torchvision_pretrained_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    # Simulate an offline machine: nothing is downloaded.
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="pretrained=False") as info:
        create_model("tv:squeezenet1_1", num_classes=10, pretrained=True)
    assert "squeezenet1_1" in str(info.value) and "checkpoints" in str(info.value)


def test_torchvision_input_size_error() -> None:
    # SqueezeNet's pooling stack cannot shrink 16x16 inputs; reported at construction, not at the first step.
    with pytest.raises(ValueError, match="'squeezenet1_1' does not accept 16x16"):
        TorchvisionEncoder("squeezenet1_1", image_size=16)


def test_gradients_flow_to_encoder() -> None:
    model = create_model("resnet18", num_classes=2, width=0.125)
    F.cross_entropy(model.as_classifier()(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1])).backward()
    assert model.encoder.conv1.weight.grad is not None and model.encoder.conv1.weight.grad.abs().sum() > 0
