"""Reading layer outputs as feature maps (tokens, NHWC, reshape_transform), default-layer errors, wrapped models,
and the token support of captum.layer_gradcam, pgc.ablationcam and cgc_heatmaps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import exaug
from exaug.explainers import grad_cam, to_feature_map
from exaug.explainers.layers import feature_map_layout
from exaug.losses.cgc import cgc_heatmaps

from .models import nhwc_stages, tv_vit, vit_reshape


@pytest.mark.parametrize("extra", [0, 1, 2, 5])
def test_tokens_with_leading_extra_tokens(extra):
    grid = torch.randn(2, 6, 4, 4)  # (B, C, h, w)
    tokens = torch.cat([torch.randn(2, extra, 6), grid.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(to_feature_map(tokens), grid)


def test_token_grid_follows_the_image_aspect_ratio():
    grid = torch.randn(1, 3, 2, 6)
    tokens = torch.cat([torch.randn(1, 1, 3), grid.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(to_feature_map(tokens, image_size=(16, 48)), grid)


def test_nhwc_detection_forcing_and_reshape_transform():
    nhwc = torch.randn(2, 4, 4, 10)
    assert torch.equal(to_feature_map(nhwc), nhwc.permute(0, 3, 1, 2))
    cube = torch.randn(2, 4, 4, 4)  # ambiguous: NCHW by convention, NHWC when forced
    assert feature_map_layout(cube.shape) == "nchw" and torch.equal(to_feature_map(cube), cube)
    assert torch.equal(to_feature_map(cube, layout="nhwc"), cube.permute(0, 3, 1, 2))
    nchw = torch.randn(2, 10, 4, 4)
    assert torch.equal(to_feature_map(nchw), nchw)
    assert torch.equal(to_feature_map(nchw, lambda t: t.flip(1)), nchw.flip(1))
    with pytest.raises(ValueError, match="reshape_transform must return a"):
        to_feature_map(nchw, lambda t: t.flatten(1))
    with pytest.raises(ValueError, match="layout must be one of"):
        to_feature_map(nchw, layout="hwc")


def test_unreadable_outputs_name_the_fix():
    with pytest.raises(ValueError, match="Pass reshape_transform"):
        to_feature_map(torch.randn(2, 3, 8))  # 3 tokens: no grid of at least 2x2
    with pytest.raises(ValueError, match="Pass reshape_transform"):
        to_feature_map(torch.randn(2, 8))


def test_gradients_flow_through_the_reading():
    tokens = torch.randn(2, 17, 3, requires_grad=True)
    to_feature_map(tokens).sum().backward()
    expected = torch.ones(2, 17, 3)
    expected[:, 0] = 0  # the class token is not part of the grid
    assert torch.equal(tokens.grad, expected)


def test_no_layer_qualifies_lists_candidates():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"could not find a default target_layer.*1 \(1, 8\).*3 \(1, 3\)"):
        exaug.create_explainer("gradcam", model)(torch.randn(2, 3, 4, 4))


def test_explicit_reshape_transform_equals_automatic_reading():
    model = tv_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layer = "encoder.layers.encoder_layer_1.ln_1"
    auto = exaug.create_explainer("gradcam", model, target_layer=layer)
    given = exaug.create_explainer("gradcam", model, target_layer=layer, reshape_transform=vit_reshape)
    assert "reshape_transform=vit_reshape" in repr(given)
    torch.testing.assert_close(auto(x, [1, 2]), given(x, [1, 2]), rtol=0, atol=0)


def test_captum_layer_gradcam_on_tokens_and_nhwc_equals_native():
    pytest.importorskip("captum")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for model, layer in ((tv_vit().double(), "encoder.layers.encoder_layer_1.ln_1"), (nhwc_stages().double(),
                                                                                   "stages.0")):
        captum = exaug.create_explainer("captum.layer_gradcam", model, target_layer=layer, relu_attributions=True)
        native = exaug.create_explainer("gradcam", model, target_layer=layer)
        torch.testing.assert_close(captum(x, [4, 6]), native(x, [4, 6]), rtol=0, atol=1e-6)


def test_pgc_ablationcam_runs_on_a_token_layer():
    pytest.importorskip("pytorch_grad_cam")
    model = tv_vit()
    explainer = exaug.create_explainer("pgc.ablationcam", model, batch_size=64)
    exp = explainer.explain(torch.randn(2, 3, 32, 32), [1, 2])
    assert explainer.layer_name == "encoder.layers.encoder_layer_1.ln_1"
    assert not exp.flat.any() and exp.saliency.shape == (2, 1, 32, 32)


class TokenMixer(nn.Module):
    """Patch tokens plus a class token, a token-wise MLP and a class-token head (no attention: CPU attention kernels
    have no double backward, which CGC needs)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = self.mlp(self.norm(tokens))
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(1))


def test_cgc_heatmaps_on_token_and_nhwc_layers_are_differentiable():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    for model, name in ((TokenMixer(), "norm"), (nhwc_stages(), "stages.0")):
        layer = dict(model.named_modules())[name]
        twin = copy.deepcopy(model)
        reference, _, _ = grad_cam(twin, dict(twin.named_modules())[name], x, torch.tensor([1, 2]))
        maps, logits, _ = cgc_heatmaps(model.train(), layer, x, torch.tensor([1, 2]))
        assert maps.shape == (2, 1, 16, 16) and logits.requires_grad
        torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), torch.ones(2))
        maps.square().sum().backward()
        assert model.patch_embed.weight.grad.abs().sum() > 0  # second order, through the reading
        assert reference.shape == (2, 1, 4, 4)


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _encoder_and_head(make_tiny_resnet):
    model = make_tiny_resnet().eval()
    encoder = nn.Sequential(model.stem, model.layer1, model.layer2, model.pool, nn.Flatten())
    return encoder, model.fc


def test_wrapped_encoders_keep_layer_paths(make_tiny_resnet, images16):
    encoder, head = _encoder_and_head(make_tiny_resnet)
    plain = Classifier(encoder, head)
    expected = exaug.create_explainer("gradcam", plain, target_layer="encoder.2")(images16, [1, 2, 3])
    wrapped_models = [
        Classifier(nn.DataParallel(copy.deepcopy(encoder)), copy.deepcopy(head)),
        Classifier(torch.compile(copy.deepcopy(encoder)), copy.deepcopy(head)),
        nn.DataParallel(Classifier(copy.deepcopy(encoder), copy.deepcopy(head))),
        torch.compile(Classifier(copy.deepcopy(encoder), copy.deepcopy(head))),
    ]
    for model in wrapped_models:
        explainer = exaug.create_explainer("gradcam", model, target_layer="encoder.2")
        assert explainer.layer_name == "encoder.2"
        torch.testing.assert_close(explainer(images16, [1, 2, 3]), expected, rtol=0, atol=0)
        default = exaug.create_explainer("gradcam", model)
        default(images16)
        assert default.layer_name == "encoder.2"
    inner = wrapped_models[0]
    assert exaug.explainers.resolve_layer(inner, "encoder.module.2")[0] == "encoder.2"
    assert isinstance(inner.encoder, nn.DataParallel)  # the tree is restored after the explanation


def test_ddp_wrapped_encoder(make_tiny_resnet, images16, tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    encoder, head = _encoder_and_head(make_tiny_resnet)
    expected = exaug.create_explainer("gradcam", Classifier(encoder, head), target_layer="encoder.2")(images16, [0, 1, 2])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        model = Classifier(nn.parallel.DistributedDataParallel(copy.deepcopy(encoder)), copy.deepcopy(head))
        explainer = exaug.create_explainer("gradcam", model, target_layer="encoder.2")
        torch.testing.assert_close(explainer(images16, [0, 1, 2]), expected, rtol=0, atol=0)
    finally:
        dist.destroy_process_group()
