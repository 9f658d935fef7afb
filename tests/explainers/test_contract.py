"""The contract every registered explainer keeps, checked for each name in ``exaug.list_explainers()``.

A new backend is covered automatically. If its map legitimately does not depend on the model's output (random
controls, class-agnostic methods), add it to ``OUTPUT_INDEPENDENT`` with the reason.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import exaug
from exaug.testing import assert_same_state, snapshot_state

NAMES = exaug.list_explainers()

# Small step counts keep the whole module fast; the semantics are tested in the backend-specific files.
FAST_OPTIONS: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"nt_samples": 2},
    "gradient_shap": {"n_samples": 2},
    "occlusion": {"window": 8, "stride": 8},
}

# Maps that do not depend on the logits, so a model with constant logits does not make them flat.
OUTPUT_INDEPENDENT = {
    "random",  # random control
    "spectral_residual",  # model-free image saliency
    "pgc.randomcam",  # random channel weights
    "eigencam",  # principal component of the activations (native)
    "pgc.eigencam",  # principal component of the activations
    "pgc.kpca_cam",  # kernel PCA of the activations
    "pgc.fem",  # k-sigma rule on the activations
    "pgc.scorecam",  # equal scores -> softmax gives uniform weights -> mean activation map
}


def make(name: str, model: nn.Module, **options) -> exaug.Explainer:
    return exaug.create_explainer(name, model, **{**FAST_OPTIONS.get(name, {}), **options})


def mixed_state_model(make_tiny_resnet) -> nn.Module:
    """Train mode, two BatchNorm layers frozen in eval mode, a frozen conv, non-zero ``.grad`` everywhere else."""
    model = make_tiny_resnet()
    model.stem[1].eval().requires_grad_(False)
    model.layer1.bn1.eval().requires_grad_(False)
    model.stem[0].requires_grad_(False)
    g = torch.Generator().manual_seed(3)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g)
    return model


def check_saliency(sal: torch.Tensor, images: torch.Tensor) -> None:
    assert sal.shape == (images.shape[0], 1, *images.shape[-2:])
    assert sal.dtype == torch.float32
    assert not sal.requires_grad and sal.grad_fn is None
    assert torch.isfinite(sal).all()
    assert sal.min() >= 0 and sal.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_model_state_is_bit_identical(name, make_tiny_resnet, images16):
    model = mixed_state_model(make_tiny_resnet)
    before = snapshot_state(model)
    explainer = make(name, model)
    sal = explainer(images16, torch.tensor([1, 2, 3]))
    check_saliency(sal, images16)
    assert_same_state(before, snapshot_state(model))

    exp = explainer.explain(images16, None)
    assert_same_state(before, snapshot_state(model))
    check_saliency(exp.saliency, images16)
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(images16)
    assert exp.targets.dtype == torch.long and torch.equal(exp.targets, logits.argmax(1))
    if exp.logits is not None:
        torch.testing.assert_close(exp.logits, logits)
    assert exp.flat.shape == (images16.shape[0],) and exp.flat.dtype == torch.bool


@pytest.mark.parametrize("name", NAMES)
def test_no_grad_caller_frozen_model_and_batch_of_one(name, make_tiny_resnet, images16):
    model = make_tiny_resnet().eval().requires_grad_(False)
    before = snapshot_state(model)
    explainer = make(name, model)
    with torch.no_grad():
        sal = explainer(images16[:1], torch.tensor([4]))
        assert not torch.is_grad_enabled()
    check_saliency(sal, images16[:1])
    assert_same_state(before, snapshot_state(model))


@pytest.mark.parametrize("name", NAMES)
def test_inference_mode_caller(name, make_tiny_resnet, images16):
    """Inference tensors in, under ``torch.inference_mode()``: the same map as a normal call, the model untouched."""
    model = mixed_state_model(make_tiny_resnet)
    before = snapshot_state(model)
    reference = make(name, model)(images16, torch.tensor([1, 2, 3]))
    with torch.inference_mode():
        x, targets = images16.clone(), torch.tensor([1, 2, 3])
        sal = make(name, model)(x, targets)
        assert torch.is_inference_mode_enabled()
    check_saliency(sal, images16)
    assert not sal.is_inference()
    assert_same_state(before, snapshot_state(model))
    torch.testing.assert_close(sal, reference)


@pytest.mark.parametrize("name", NAMES)
def test_global_rngs_are_left_alone(name, tiny_resnet, images16):
    """No backend draws from (or advances) torch's, numpy's or Python's global RNG."""
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    make(name, tiny_resnet)(images16, torch.tensor([1, 2, 3]))
    assert torch.equal(torch_state, torch.get_rng_state())
    after = np.random.get_state()
    assert np.array_equal(numpy_state[1], after[1]) and numpy_state[2:] == after[2:]
    assert python_state == random.getstate()


@pytest.mark.parametrize("name", NAMES)
def test_outer_graph_survives(name, make_tiny_resnet, images16):
    model = make_tiny_resnet()
    reference = copy.deepcopy(model)
    loss = model(images16).square().sum()
    make(name, model)(images16, torch.tensor([0, 1, 2]))
    loss.backward()
    reference(images16).square().sum().backward()
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=n)
    for (n, b), c in zip(model.named_buffers(), reference.buffers()):
        assert torch.equal(b, c), n


@pytest.mark.parametrize("name", NAMES)
def test_constant_logits_give_flat_zero_maps(name, constant_model, images16):
    exp = make(name, constant_model).explain(images16)
    assert torch.isfinite(exp.saliency).all()
    if name in OUTPUT_INDEPENDENT:
        return
    assert exp.flat.all(), f"{name}: map of a model that ignores its input should be flat"
    assert torch.all(exp.saliency == 0)


@pytest.mark.parametrize("name", NAMES)
def test_targets_are_validated(name, tiny_resnet, images16):
    explainer = make(name, tiny_resnet)
    with pytest.raises(ValueError, match="one entry per image"):
        explainer(images16, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer class indices"):
        explainer(images16, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        explainer(images16, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        explainer(images16, [-1, 0, 0])


def test_unknown_name_lists_valid_names_and_suggests_closest():
    with pytest.raises(ValueError) as info:
        exaug.create_explainer("gradcamm", nn.Linear(1, 1))
    message = str(info.value)
    assert "Did you mean 'gradcam'?" in message
    assert all(name in message for name in NAMES)


def test_enough_backends_and_descriptions():
    assert len(exaug.list_explainers()) >= 12
    assert all(text.strip() and "\n" not in text for text in exaug.describe_explainers().values())


def test_importing_exaug_does_not_import_heavy_backends():
    code = (
        "import exaug, sys; "
        "assert 'pytorch_grad_cam' not in sys.modules and 'captum' not in sys.modules, "
        "[m for m in sys.modules if m.startswith(('captum', 'pytorch_grad_cam'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
