"""The explainer contract over the models researchers bring: a CIFAR ResNet, torchvision and timm ViTs, a timm
ConvNeXt and a channels-last (Swin-like) stage model. For each: the default layer is sensible, the isolation
contract holds, Grad-CAM equals pytorch-grad-cam with the same layer and reshape, and the augment runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import exaug
from exaug.explainers import normalize_saliency
from exaug.testing import check_explainer_contract

from .models import nhwc_reshape, nhwc_stages, timm_convnext, timm_vit, tv_vit, vit_reshape

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def cifar_resnet():
    from tests.conftest import build_tiny_resnet

    return build_tiny_resnet().eval()


def needs_timm(build):
    def wrapped():
        pytest.importorskip("timm")
        return build()

    return wrapped


# (builder, expected default layer, pgc reshape transform for that layer, image size)
MODELS = {
    "cifar_resnet": (cifar_resnet, "layer2", None, 16),
    "tv_vit": (tv_vit, "encoder.layers.encoder_layer_1.ln_1", vit_reshape, 32),
    "timm_vit": (needs_timm(timm_vit), "blocks.1.norm1", vit_reshape, 32),
    "timm_convnext": (needs_timm(timm_convnext), "stages.3.downsample.0", None, 32),
    "nhwc_stages": (nhwc_stages, "stages", nhwc_reshape, 32),
}


@pytest.fixture(params=list(MODELS))
def case(request):
    build, layer, reshape, size = MODELS[request.param]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return request.param, build(), layer, reshape, images


def test_default_layer_is_sensible(case):
    name, model, layer, _, images = case
    explainer = exaug.create_explainer("gradcam", model)
    explainer(images)
    assert explainer.layer_name == layer
    assert repr(explainer).startswith(f"GradCAM(target_layer={layer!r} (auto)")
    for part in ("attn", "q_norm", "k_norm", "patch_embed", "conv_proj"):
        assert part not in layer.split(".")


def test_isolation_contract_holds(case):
    _, model, _, _, images = case
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    for name in ("gradcam", "gradcam++", "eigencam"):
        sal = check_explainer_contract(name, model, images, targets=[1, 2])
        assert not normalize_saliency(sal)[1].all(), f"{name}: every map is flat"


def test_gradcam_equals_pytorch_grad_cam_with_same_layer_and_reshape(case):
    _, model, layer, reshape, images = case
    model, images = model.double(), images.double()
    native = exaug.create_explainer("gradcam", model, target_layer=layer)(images, [3, 7])
    reference_model = copy.deepcopy(model)
    module = exaug.explainers.resolve_layer(reference_model, layer)[1]
    with pgc.GradCAM(reference_model, [module], reshape_transform=reshape) as cam:
        maps = cam(images, [ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
    reference = normalize_saliency(torch.from_numpy(np.asarray(maps, dtype=np.float32)).unsqueeze(1))[0]
    # pgc normalises before resizing (epsilon 1e-7) and resizes with OpenCV in float32.
    assert (native - reference).abs().max() <= 1e-4


def test_explanation_mask_augment_runs(case):
    _, model, _, _, images = case
    views = (images + 0.1, images - 0.1)
    labels = torch.tensor([0, 1])
    batch = exaug.ExplanationMaskAugment("gradcam", mode="exconb")(images, views, labels, model)
    assert batch.images.shape[1:] == images.shape[1:] and torch.isfinite(batch.images).all()
