"""Every metric leaves the model exactly as it found it, in train mode with accumulated gradients, and works
whether or not the caller disabled autograd."""

from __future__ import annotations

import pytest
import torch

from exaug.explainers import create_explainer
from exaug.metrics import (
    DropIncrease,
    Infidelity,
    InsertionDeletion,
    adversarial_accuracy,
    class_probability_score,
    compute_embeddings,
    corruption_accuracy,
    drop_increase,
    fgsm,
    infidelity,
    insertion_deletion,
    pgd,
    sensitivity_max,
)
from exaug.testing import assert_same_state, snapshot_state

SAL = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))

CALLS = {
    "drop_increase": lambda m, x, y: drop_increase(m, x, SAL),
    "DropIncrease": lambda m, x, y: DropIncrease("gradcam", m, target_layer="block2").update(x),
    "infidelity": lambda m, x, y: infidelity(m, x, SAL, n_perturb_samples=2),
    "Infidelity": lambda m, x, y: Infidelity("gradcam", m, perturbation="square", n_perturb_samples=2).update(x),
    "sensitivity_max": lambda m, x, y: sensitivity_max(create_explainer("gradcam", m), x, n_perturb_samples=2),
    "insertion_deletion": lambda m, x, y: insertion_deletion(class_probability_score(m, y), x, SAL, steps=4),
    "InsertionDeletion": lambda m, x, y: InsertionDeletion("random", m, steps=4, explainer_options={"seed": 0}).update(
        x
    ),
    "fgsm": lambda m, x, y: fgsm(m, x, y),
    "pgd": lambda m, x, y: pgd(m, x, y, steps=2),
    "adversarial_accuracy": lambda m, x, y: adversarial_accuracy(m, x, y, "pgd", steps=1),
    "corruption_accuracy": lambda m, x, y: corruption_accuracy(
        m, x, y, corruptions=["gaussian_noise"], severities=(2,)
    ),
    "compute_embeddings": lambda m, x, y: compute_embeddings(m, x, batch_size=4),
}


@pytest.mark.parametrize("grad_enabled", [True, False])
@pytest.mark.parametrize("name", list(CALLS))
def test_model_untouched(cnn, images, labels, name, grad_enabled):
    cnn.block1.requires_grad_(False)  # a partly frozen model: requires_grad flags must survive too
    before = snapshot_state(cnn)
    with torch.set_grad_enabled(grad_enabled):
        out = CALLS[name](cnn, images.clamp(-1.9, 1.9), labels)
    assert_same_state(before, snapshot_state(cnn))
    assert torch.is_grad_enabled()
    tensors = [out] if isinstance(out, torch.Tensor) else []
    if isinstance(out, dict):
        tensors = [v for d in out.values() for v in (d.values() if isinstance(d, dict) else [d])]
    elif isinstance(out, tuple):
        tensors = list(out)
    assert all(torch.isfinite(t).all() for t in tensors if isinstance(t, torch.Tensor))
