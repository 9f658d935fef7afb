"""Target layers that return tuples (transformers 4's ViT blocks, attention modules) and nested attention modules:
a stand-in with that layout, no transformers needed. The reference is the same explainer at an identity inserted
where element 0 of the tuple flows on (a tensor-output layer), so the maps must be equal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exaug.explainers import create_explainer, find_default_cam_layer, normalize_saliency
from exaug.explainers.layers import to_feature_map
from exaug.utils.outputs import layer_tensor, tuple_output_tapped, with_layer_tensor

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")


# -- the transformers-4 layout ----------------------------------------------------------------------------------

class SelfAttention(nn.Module):  # transformers 4's ViTSelfAttention: inside ViTAttention, returns a tuple
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)

    def forward(self, x):
        out, weights = self.attn(x, x, x)
        return out, weights


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention = SelfAttention(dim)
        self.dense = nn.Linear(dim, dim)

    def forward(self, x):
        out = self.attention(x)
        return (self.dense(out[0]),) + out[1:]


class Layer(nn.Module):  # transformers 4's ViTLayer: returns (hidden_states,)
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layernorm_before = nn.LayerNorm(dim)
        self.attention = Attention(dim)
        self.layernorm_after = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attention(self.layernorm_before(x))[0]
        return (x + self.mlp(self.layernorm_after(x)),)


class OldStyleViT(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.layer = nn.ModuleList([Layer(dim) for _ in range(2)])
        self.classifier = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        for block in self.layer:
            h = block(h)[0]  # a hook returning a tensor instead of the tuple would silently break this
        return {"logits": self.classifier(h[:, 0])}


@pytest.mark.parametrize("name", ["gradcam", "xgradcam", "captum.layer_gradcam", "pgc.gradcam"])
def test_transformers_4_layout_default_layer_and_tuple_blocks(name):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = OldStyleViT().eval()
    assert find_default_cam_layer(model, images) == "layer.1.layernorm_before"
    targets = torch.tensor([0, 1, 4])
    # Element 0 of block 0's tuple is the input of block 1's first norm: the same tensor, read two ways.
    got = create_explainer(name, model, target_layer="layer.0")(images, targets)
    want = _input_of_norm_maps(name, model, images, targets)
    assert not normalize_saliency(got)[1].all()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _input_of_norm_maps(name, model, images, targets):
    """The reference: the same explainer at an identity inserted before block 1 (a tensor-output layer)."""
    probe = nn.Identity()
    block = model.layer[1]
    original = block.layernorm_before
    block.layernorm_before = nn.Sequential(probe, original)
    try:
        return create_explainer(name, model, target_layer=probe)(images, targets)
    finally:
        block.layernorm_before = original


def test_layer_tensor_and_its_replacement():
    hidden, weights = torch.randn(2, 5, 4), torch.randn(2, 5, 5)
    assert layer_tensor(hidden) is hidden and layer_tensor((hidden, weights)) is hidden
    assert layer_tensor([hidden]) is hidden
    other = torch.zeros_like(hidden)
    swapped = with_layer_tensor((hidden, weights), other)
    assert type(swapped) is tuple and swapped[0] is other and swapped[1] is weights
    assert with_layer_tensor(hidden, other) is other
    tokens = torch.randn(2, 17, 8)
    assert torch.equal(to_feature_map((tokens, None)), to_feature_map(tokens))
    with pytest.raises(TypeError, match="must output a tensor \\(or a tuple starting with one\\), got tuple"):
        layer_tensor((None, hidden))


def test_tuple_output_tapped_routes_element_0_through_the_tap_and_cleans_up():
    torch.manual_seed(0)
    block = Layer(8)
    x = torch.randn(2, 5, 8)
    seen = []
    tap = nn.Identity()
    tap.register_forward_hook(lambda m, i, o: seen.append(o))
    before = block(x)[0]
    with tuple_output_tapped(block, tap) as hooked:
        assert hooked is tap
        during = block(x)
    assert len(seen) == 1 and seen[0] is during[0] and torch.equal(during[0], before)
    assert not block._forward_hooks  # removed on exit
    linear = nn.Linear(8, 8)
    with tuple_output_tapped(linear, tap):
        linear(x)
    assert len(seen) == 1  # tensor outputs are left alone


def test_ablation_cam_refuses_a_tuple_layer_clearly():
    torch.manual_seed(0)
    model = OldStyleViT().eval()
    explainer = create_explainer("pgc.ablationcam", model, target_layer="layer.0")
    with pytest.raises(ValueError, match=r"cannot ablate target_layer 'layer.0': it returns a tuple, not a tensor"):
        explainer(torch.rand(1, 3, 32, 32))
