"""Hugging Face models (issue #16): a tiny randomly initialised ``ViTForImageClassification`` (no download) is
explained, augmented and measured exactly as the same network behind a forward that returns a tensor.

The independent reference is ``Plain(hf)``: the same modules, with ``forward(x) = hf(x).logits``, so every map,
mask and metric must be *equal* (not just close). The transformers-4 layout (tuple-returning blocks, nested attention
modules) is covered without transformers by ``tests/explainers/test_tuple_layers.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import exaug
from exaug.explainers import create_explainer, find_default_cam_layer, normalize_saliency
from exaug.explainers import explainer_uses_layer, list_explainers
from exaug.metrics import drop_increase, fgsm, infidelity
from exaug.testing import check_explainer_contract

transformers = pytest.importorskip("transformers")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")

# The native CAM family: every registered layer backend outside the library namespaces (pgc.*, captum.*).
NATIVE = [name for name in list_explainers() if explainer_uses_layer(name) and "." not in name]
LIBRARY = ["captum.layer_gradcam", "saliency", "pgc.gradcam", "rise"]
OPTIONS = {"rise": {"n_masks": 64, "seed": 0}}


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    return transformers.ViTForImageClassification(config).eval()


class Plain(nn.Module):
    """The same network, its forward returning the logits tensor (the reference)."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(x).logits


@pytest.fixture(scope="module")
def hf():
    return tiny_vit()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def last_block(model: nn.Module) -> str:
    """``vit.layers.1`` (transformers 5) or ``vit.encoder.layer.1`` (transformers 4)."""
    names = dict(model.named_modules())
    return "vit.layers.1" if "vit.layers.1" in names else "vit.encoder.layer.1"


def test_the_model_returns_a_model_output_not_a_tensor(hf, images):
    assert not isinstance(hf(images), torch.Tensor)
    assert torch.equal(Plain(hf)(images), hf(images).logits)


def test_default_layer_is_the_last_blocks_first_norm(hf, images):
    assert find_default_cam_layer(hf, images) == f"{last_block(hf)}.layernorm_before"
    explainer = create_explainer("gradcam", hf)
    explainer(images)
    assert explainer.layer_name == f"{last_block(hf)}.layernorm_before"


@pytest.mark.parametrize("name", NATIVE + LIBRARY)
def test_maps_equal_those_of_the_tensor_returning_reference(hf, images, name):
    targets = torch.tensor([0, 3, 7])
    # The layer as a module: its dotted path differs in the reference (``hf.`` prefix), the module is the same.
    layer = {"target_layer": hf.get_submodule(f"{last_block(hf)}.layernorm_before")} if name not in (
        "saliency", "rise") else {}
    options = {**OPTIONS.get(name, {}), **layer}
    got = create_explainer(name, hf, **options).explain(images, targets)
    want = create_explainer(name, Plain(hf), **options).explain(images, targets)
    assert got.saliency.shape == (3, 1, 32, 32)
    assert torch.isfinite(got.saliency).all()
    assert not got.flat.all(), f"{name}: every map is flat"
    torch.testing.assert_close(got.saliency, want.saliency, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gradcam", "eigencam", "captum.layer_gradcam", "pgc.gradcam"])
def test_a_tuple_output_layer_is_read_through_its_first_element(hf, images, name):
    # transformers 5's attention module returns (attn_output, weights): element 0 is its output projection's output,
    # a plain tensor layer, which is the reference.
    attention = "vit.layers.0.attention" if "vit.layers.0" in dict(hf.named_modules()) else None
    if attention is None:
        pytest.skip("transformers 4 layout: covered by the stand-in model below")
    out = {}
    handle = hf.get_submodule(attention).register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    hf(images)
    handle.remove()
    assert isinstance(out["o"], tuple)
    targets = torch.tensor([1, 2, 3])
    got = create_explainer(name, hf, target_layer=attention)(images, targets)
    want = create_explainer(name, hf, target_layer=f"{attention}.o_proj")(images, targets)
    assert not normalize_saliency(got)[1].all()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "captum.layer_gradcam", "pgc.gradcam", "rise"])
def test_isolation_contract_holds_on_the_hf_model(images, name):
    model = tiny_vit().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    explainer = create_explainer(name, model, **OPTIONS.get(name, {}))
    check_explainer_contract(explainer, model, images, targets=[1, 2, 3])
    assert model.training


def test_explanation_mask_augment_end_to_end_equals_the_reference(hf, images):
    labels = torch.tensor([0, 1, 2])
    views = (images.flip(-1), images.flip(-2))
    aug = exaug.ExplanationMaskAugment("gradcam")
    got = aug.draw(images, labels, hf)
    want = exaug.ExplanationMaskAugment("gradcam").draw(images, labels, Plain(hf))
    assert torch.equal(got.masked, want.masked) and torch.equal(got.correct, want.correct)
    assert torch.equal(got.correct, Plain(hf)(got.masked).argmax(1) == labels)
    batch = aug(images, views, labels, hf)
    assert batch.images.shape[1:] == (3, 32, 32) and torch.isfinite(batch.images).all()


def test_metrics_that_call_the_model_equal_the_reference(hf, images):
    saliency = create_explainer("gradcam", hf)(images)
    got, want = drop_increase(hf, images, saliency), drop_increase(Plain(hf), images, saliency)
    assert got.keys() == want.keys()
    for q in got:
        for key in got[q]:
            torch.testing.assert_close(got[q][key], want[q][key], rtol=0, atol=0)
    labels = torch.tensor([0, 1, 2])
    torch.testing.assert_close(fgsm(hf, images, labels), fgsm(Plain(hf), images, labels), rtol=0, atol=0)
    torch.testing.assert_close(infidelity(hf, images, saliency), infidelity(Plain(hf), images, saliency))


class DictWithoutLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        features = self.conv(x)
        return {"features": features, "pooled": features.mean(dim=(2, 3))}


@pytest.mark.parametrize("name", ["gradcam", "pgc.gradcam", "saliency"])
def test_a_dict_without_logits_gives_the_clear_error(images, name):
    model = DictWithoutLogits()
    with pytest.raises(TypeError, match=r"cannot read logits from the model's output \(got dict with keys "
                                        r"\['features', 'pooled'\]\).*'logits' entry"):
        create_explainer(name, model, **({"target_layer": "conv"} if name != "saliency" else {}))(images)


def test_the_augment_gives_the_clear_error_for_a_dict_without_logits(images):
    aug = exaug.ExplanationMaskAugment(lambda x, t: x.mean(1, keepdim=True))
    with pytest.raises(TypeError, match="cannot read logits from the model's output"):
        aug(images, (images, images), torch.tensor([0, 1, 2]), DictWithoutLogits())
