"""Infidelity / max-sensitivity: our wrappers equal Captum called directly with the same perturbations."""

from __future__ import annotations

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max

from exaug.explainers import create_explainer
from exaug.metrics import (
    Infidelity, SensitivityMax, gaussian_perturbation, infidelity, sensitivity_max, square_perturbation,
    uniform_perturbation,
)
from exaug.testing import assert_same_state, snapshot_state


def eval_copy(model):
    copy = type(model)()
    copy.load_state_dict(model.state_dict())
    return copy.eval()


@pytest.mark.parametrize("perturbation", ["gaussian", "square"])
@pytest.mark.parametrize("normalize", [False, True])
def test_equals_captum_direct(cnn, images, perturbation, normalize):
    saliency = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    ours = infidelity(
        cnn, images, saliency, targets, perturbation=perturbation, noise_std=0.01, max_square=5,
        n_perturb_samples=7, seed=11, normalize=normalize,
    )
    generator = torch.Generator().manual_seed(11)
    if perturbation == "gaussian":
        perturb = gaussian_perturbation(0.01, generator)
    else:
        perturb = square_perturbation(5, 0.0, generator)
    reference = captum_infidelity(
        eval_copy(cnn), perturb, images, saliency.expand(-1, 3, -1, -1), target=targets,
        n_perturb_samples=7, normalize=normalize,
    )
    torch.testing.assert_close(ours, reference.reshape(-1))
    assert torch.isfinite(ours).all() and (ours >= 0).all()


def test_seeded_and_global_rng_untouched(cnn, images):
    saliency = torch.rand(6, 1, 16, 16)
    state = torch.get_rng_state()
    a = infidelity(cnn, images, saliency, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = infidelity(cnn, images, saliency, seed=3)
    c = infidelity(cnn, images, saliency, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_square_perturbation_removes_one_square():
    x = torch.rand(50, 3, 12, 12) + 1.0  # strictly positive, so the removed region is visible in I
    removed, perturbed = square_perturbation(4, 0.0, torch.Generator().manual_seed(0))(x)
    torch.testing.assert_close(perturbed, x - removed)
    inside = removed[:, 0] != 0
    assert torch.equal(inside.unsqueeze(1).expand(-1, 3, -1, -1), removed != 0)  # same square in every channel
    rows, cols = inside.any(dim=2), inside.any(dim=1)
    side_r, side_c = rows.sum(dim=1), cols.sum(dim=1)
    assert torch.equal(side_r, side_c) and side_r.min() >= 1 and side_r.max() <= 4
    assert torch.equal(inside.sum(dim=(1, 2)), side_r * side_c)  # a full square
    assert torch.all(perturbed[removed != 0] == 0)


def test_attribution_scale_and_output_option(cnn, images):
    saliency = torch.rand(6, 1, 16, 16)
    plain = infidelity(cnn, images, saliency, normalize=True)
    scaled = infidelity(cnn, images, 10 * saliency, normalize=True)
    torch.testing.assert_close(plain, scaled, rtol=1e-4, atol=1e-9)  # Yeh's rescaling removes the scale
    prob = infidelity(cnn, images, saliency, output="prob")
    assert prob.shape == (6,) and torch.isfinite(prob).all()
    full = infidelity(cnn, images, saliency.expand(-1, 3, -1, -1))
    torch.testing.assert_close(full, infidelity(cnn, images, saliency))


def test_class_matches_function_and_leaves_model_untouched(cnn, images):
    before = snapshot_state(cnn)
    explainer = create_explainer("gradcam", cnn, target_layer="block2")
    metric = Infidelity(explainer, cnn, seed=2, n_perturb_samples=4)
    metric.update(images)
    explanation = explainer.explain(images)
    expected = infidelity(cnn, images, explanation.saliency, explanation.targets, seed=2, n_perturb_samples=4)
    assert metric.compute() == pytest.approx(float(expected.mean()), rel=1e-6)
    metric.update(images[:1])  # the generator continues: a second batch gets fresh perturbations
    assert metric.count == 7
    assert_same_state(before, snapshot_state(cnn))


def test_sensitivity_equals_captum_direct(cnn, images):
    explainer = create_explainer("gradcam", cnn, target_layer="block2")
    targets = explainer.explain(images).targets
    ours = sensitivity_max(explainer, images, targets, perturb_radius=0.05, n_perturb_samples=3, seed=7)

    def explain(inputs, target):
        # Captum's calling convention: a 1-tuple for the clean inputs (a tuple back), a tensor for perturbed ones.
        if isinstance(inputs, tuple):
            return (explainer.explain(inputs[0], target).saliency,)
        return explainer.explain(inputs, target).saliency

    reference = captum_sensitivity_max(
        explain, images, perturb_func=uniform_perturbation(torch.Generator().manual_seed(7)), perturb_radius=0.05,
        n_perturb_samples=3, target=targets,
    )
    torch.testing.assert_close(ours, reference.reshape(-1))
    before = snapshot_state(cnn)
    metric = SensitivityMax("gradcam", cnn, target_layer="block2", perturb_radius=0.05, n_perturb_samples=3, seed=7)
    metric.update(images)
    assert metric.compute() == pytest.approx(float(ours.mean()), rel=1e-5)
    assert_same_state(before, snapshot_state(cnn))


def test_errors(cnn, images):
    with pytest.raises(ValueError, match="empty"):
        infidelity(cnn, images[:0], torch.rand(0, 1, 16, 16))
    with pytest.raises(ValueError, match="attributions"):
        infidelity(cnn, images, torch.rand(6, 2, 16, 16))
    with pytest.raises(ValueError, match="perturbation"):
        infidelity(cnn, images, torch.rand(6, 1, 16, 16), perturbation="salt")
    with pytest.raises(ValueError, match="noise_std"):
        infidelity(cnn, images, torch.rand(6, 1, 16, 16), noise_std=0.0)
    with pytest.raises(RuntimeError, match="before any update"):
        Infidelity("gradcam", cnn).compute()
