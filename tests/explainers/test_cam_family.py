"""The native CAM family equals pytorch-grad-cam's formulas at the same layer (float64, raw maps at the layer's
resolution), on a CNN layer and on a ViT token layer, and runs batched with per-sample targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import exaug
from exaug.explainers.cam import CAMExplainer

from .models import vit_reshape

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

FAMILY = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcam_elementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
}
TARGETS = [1, 5, 9, 0]


def pgc_raw(cam_class: str, model, layer: str, x, targets, reshape=None) -> torch.Tensor:
    """pytorch-grad-cam's own map before resizing: its ``get_cam_image`` on the activations and gradients it
    recorded, rectified as its ``compute_cam_per_layer`` does."""
    model = copy.deepcopy(model)
    module = exaug.explainers.resolve_layer(model, layer)[1]
    cam = getattr(pgc, cam_class)(model, [module], reshape_transform=reshape)
    try:
        pgc_targets = [ClassifierOutputTarget(t) for t in targets]
        cam(x, pgc_targets)
        recorded = cam.activations_and_grads
        activations = recorded.activations[0].numpy()
        grads = recorded.gradients[0].numpy() if recorded.gradients else None
        if cam_class == "EigenCAM":
            # The SVD's sign is arbitrary (LAPACK-dependent) in pgc's EigenCAM; exaug fixes it like pgc's own
            # sign-corrected projection (Seg-Eigen-CAM), which is the reference here.
            from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

            raw = get_2d_projection_with_sign_correction(activations)
        else:
            raw = cam.get_cam_image(x, module, pgc_targets, activations, grads, False)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.maximum(np.asarray(raw, dtype=np.float64), 0))


def assert_same_maps(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None]
    torch.testing.assert_close((ours / scale).double(), reference / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", ["layer2", "layer1"])
@pytest.mark.parametrize("name", list(FAMILY))
def test_equals_pytorch_grad_cam_on_a_cnn_layer(name, layer, tiny_resnet64):
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    explainer = exaug.create_explainer(name, tiny_resnet64, target_layer=layer)
    ours, _, targets = explainer.cam(x, torch.tensor(TARGETS))
    assert targets.tolist() == TARGETS
    assert_same_maps(ours[:, 0], pgc_raw(FAMILY[name], tiny_resnet64, layer, x, TARGETS))


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "layercam", "hirescam", "eigencam"])
def test_equals_pytorch_grad_cam_on_a_vit_token_layer(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2, pretrained=False,
                              num_classes=10).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours, _, _ = exaug.create_explainer(name, model, target_layer="blocks.1.norm1").cam(x, torch.tensor([3, 8]))
    assert ours.shape == (2, 1, 8, 8)
    assert_same_maps(ours[:, 0], pgc_raw(FAMILY[name], model, "blocks.1.norm1", x, [3, 8], reshape=vit_reshape))


@pytest.mark.parametrize("name", [name for name in FAMILY if name != "eigencam"])  # eigencam: sign, see above
def test_saliency_equals_the_pgc_wrapper(name, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    native = exaug.create_explainer(name, tiny_resnet64, target_layer="layer2")(x, [3, 0, 7])
    wrapped = exaug.create_explainer(f"pgc.{name}", tiny_resnet64, target_layer="layer2")(x, [3, 0, 7])
    # pgc normalises before resizing (epsilon 1e-7) and resizes with OpenCV in float32.
    assert (native - wrapped).abs().max() <= 1e-4


def test_names_aliases_and_repr(tiny_resnet):
    assert exaug.create_explainer("gradcampp", tiny_resnet).__class__ is exaug.create_explainer(
        "gradcam++", tiny_resnet).__class__
    for name in FAMILY:
        explainer = exaug.create_explainer(name, tiny_resnet, target_layer="layer1", relu=False)
        assert isinstance(explainer, CAMExplainer) and explainer.layer_name == "layer1"
        assert repr(explainer).startswith(f"{type(explainer).__name__}(target_layer='layer1', relu=False")
        assert exaug.explainers.explainer_uses_layer(name) and exaug.explainers.explainer_accepts(name, "reshape_transform")


def test_eigencam_takes_no_backward(tiny_resnet, images16):
    model = tiny_resnet.eval()
    calls = []
    model.layer2.register_full_backward_hook(lambda *args: calls.append(1))
    exaug.create_explainer("eigencam", model)(images16)
    assert not calls


def test_per_sample_targets_equal_one_call_per_sample(tiny_resnet64):
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for name in ("gradcam++", "xgradcam", "layercam"):
        explainer = exaug.create_explainer(name, tiny_resnet64, target_layer="layer2")
        batched = explainer(x, TARGETS)
        single = torch.cat([explainer(x[i : i + 1], [t]) for i, t in enumerate(TARGETS)])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
