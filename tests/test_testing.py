"""``exaug.testing``: the snapshot helpers and ``check_explainer_contract`` pass well-behaved explainers and name
the first thing a misbehaving one breaks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import exaug
from exaug.testing import assert_same_state, check_explainer_contract, snapshot_state
from exaug.utils.isolation import isolated


@pytest.fixture
def model(make_tiny_resnet):
    """Train mode, BatchNorm with running statistics, accumulated ``.grad`` tensors: every leak is visible."""
    model = make_tiny_resnet()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    return model


def test_registered_names_instances_and_isolated_callables_pass(model, images16):
    for spec in ("gradcam", "random", exaug.create_explainer("pgc.gradcam", model, target_layer="layer2")):
        sal = check_explainer_contract(spec, model, images16, targets=[0, 1, 2])
        assert sal.shape == (3, 1, 16, 16) and 0 <= sal.min() <= sal.max() <= 1

    def careful(images, targets):
        with isolated(model), torch.no_grad():
            logits = model(images)  # (B, K)
        return images.sum(1, keepdim=True) * logits.amax(1).view(-1, 1, 1, 1) * 100  # raw: the range is not checked

    assert check_explainer_contract(careful, model, images16).abs().max() > 1
    assert model.training


def misbehaving_explainers(model):
    """Each breaks one part of the contract; the expected message names it."""

    def leaves_eval_mode(images, targets):
        model.eval()
        return images.mean(1, keepdim=True)

    def updates_batchnorm_stats(images, targets):
        with torch.no_grad():
            model(images)  # train mode: BatchNorm updates its running statistics
        return images.mean(1, keepdim=True)

    def drops_gradients(images, targets):
        model.zero_grad()  # what pytorch-grad-cam does on every call
        return images.mean(1, keepdim=True)

    def zeroes_gradients(images, targets):
        model.zero_grad(set_to_none=False)
        return images.mean(1, keepdim=True)

    def leaks_a_hook(images, targets):
        model.layer1.register_forward_hook(lambda *args: None)
        return images.mean(1, keepdim=True)

    def changes_a_parameter(images, targets):
        with torch.no_grad():
            model.fc.bias.add_(1)
        return images.mean(1, keepdim=True)

    def freezes_a_layer(images, targets):
        model.layer2.requires_grad_(False)
        return images.mean(1, keepdim=True)

    def wrong_shape(images, targets):
        return images  # (B, C, H, W)

    def not_finite(images, targets):
        return torch.full_like(images[:, :1], float("nan"))

    return {
        leaves_eval_mode: r"training changed for \['', ",
        updates_batchnorm_stats: r"buffers\[stem.1.running_mean\] changed",
        drops_gradients: r"grads\[stem.0.weight\]: None-ness changed \(False -> True\)",
        zeroes_gradients: r"grads\[stem.0.weight\] changed",
        leaks_a_hook: "hooks left on the model: 0 before, 1 after",
        changes_a_parameter: r"params\[fc.bias\] changed",
        freezes_a_layer: r"requires_grad changed for \['layer2.conv1.weight'",
        wrong_shape: r"shape \(B, 1, H, W\) = \(3, 1, 16, 16\), got \(3, 3, 16, 16\)",
        not_finite: "NaN or inf",
    }


@pytest.mark.parametrize("index", range(9))
def test_misbehaving_explainers_fail_naming_the_difference(make_tiny_resnet, images16, index):
    model = make_tiny_resnet()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    explainer, message = list(misbehaving_explainers(model).items())[index]
    with pytest.raises(AssertionError, match=message):
        check_explainer_contract(explainer, model, images16)


def test_an_explainer_subclass_that_skips_isolation_is_caught(model, images16):
    class Unisolated(exaug.Explainer):
        """Calls the model in its own explain(), outside the base class's isolation."""

        def explain(self, images, targets=None):
            self.model(images)  # train-mode forward: BatchNorm statistics move
            return super().explain(images, targets)

        def _attribute(self, images, targets):
            logits = self.model(images)
            return images.mean(1, keepdim=True), logits, logits.argmax(1)

    with pytest.raises(AssertionError, match="the explainer changed the model: buffers"):
        check_explainer_contract(Unisolated(model), model, images16)


def test_options_and_bad_arguments(model, images16):
    with pytest.raises(ValueError, match="unknown explainer 'gradkam'"):
        check_explainer_contract("gradkam", model, images16)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        check_explainer_contract("gradcam", model, images16[0])


def test_snapshot_helpers_detect_each_kind_of_change(make_tiny_resnet):
    model = make_tiny_resnet()
    before = snapshot_state(model)
    assert_same_state(before, snapshot_state(model))
    model.layer1.bn1.running_var.mul_(2)
    with pytest.raises(AssertionError, match=r"buffers\[layer1.bn1.running_var\] changed"):
        assert_same_state(before, snapshot_state(model))
    model = make_tiny_resnet()
    before = snapshot_state(model)
    model.fc.weight.grad = torch.zeros_like(model.fc.weight)
    with pytest.raises(AssertionError, match=r"grads\[fc.weight\]: None-ness changed \(True -> False\)"):
        assert_same_state(before, snapshot_state(model))
    model = make_tiny_resnet()
    before = snapshot_state(model)
    model.layer1 = nn.Identity()  # a swapped module changes the module tree
    with pytest.raises(AssertionError, match="training changed"):
        assert_same_state(before, snapshot_state(model))
