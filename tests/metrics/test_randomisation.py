"""The model-parameter randomisation check: its similarity measures against SciPy / scikit-image, analytic cases
(a model-free explainer never changes; Grad-CAM of a randomised network does), isolation, and Quantus' MPRT on the
same model, explainer and seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exaug.explainers import create_explainer
from exaug.metrics import (
    ModelParameterRandomisation,
    model_parameter_randomisation,
    randomisation_steps,
    spearman_correlation,
    ssim,
)
from exaug.testing import assert_same_state, snapshot_state


def _maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of ReLU'd maps: many exact zeros, so the rank ties are real."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(5, 1, 12, 12, generator=g, dtype=torch.float64) - 0.3).clamp_min(0)
    b = (a + 0.7 * torch.randn(5, 1, 12, 12, generator=g, dtype=torch.float64)).clamp_min(0)
    return a, b


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    a, b = _maps()
    expected = [stats.spearmanr(x.flatten().numpy(), y.flatten().numpy())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman_correlation(a, b).numpy(), expected, rtol=1e-10)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _maps(1)
    expected = []
    for x, y in zip(a[:, 0].numpy(), b[:, 0].numpy()):
        both = np.concatenate([x, y])
        expected.append(metrics.structural_similarity(x, y, data_range=float(both.max() - both.min())))
    np.testing.assert_allclose(ssim(a, b).numpy(), expected, rtol=1e-10)


def test_identical_and_constant_maps():
    a, _ = _maps()
    flat = torch.zeros_like(a)
    assert spearman_correlation(a, a).tolist() == [1.0] * 5 and ssim(a, a).tolist() == [1.0] * 5
    assert spearman_correlation(flat, flat).tolist() == [1.0] * 5  # an unchanged (flat) map is the same map
    assert spearman_correlation(a, flat).isnan().all()  # a rank correlation with a constant is undefined


def test_steps_top_first_and_grouped(cnn):
    assert randomisation_steps(cnn) == ["fc", "block2.1", "block2.0", "block1.1", "block1.0"]
    assert randomisation_steps(cnn, depth=1) == ["fc", "block2", "block1"]
    with pytest.raises(ValueError, match="depth"):
        randomisation_steps(cnn, depth=0)


def test_model_free_explainer_scores_one_and_gradcam_decays(cnn, images):
    before, rng = snapshot_state(cnn), torch.get_rng_state()
    still = model_parameter_randomisation("spectral_residual", cnn, images, targets=0)
    for values in still.similarity.values():
        assert torch.equal(values, torch.ones_like(values))
    curve = model_parameter_randomisation("gradcam", cnn, images, targets=torch.arange(6) % 5, depth=1,
                                          target_layer="block2", seed=3)
    assert curve.steps == ["fc", "block2", "block1"] and tuple(curve.similarity["ssim"].shape) == (3, 6)
    # Once every layer is random the maps no longer resemble the trained network's.
    assert curve.similarity["spearman"][-1].nan_to_num(0).mean() < 0.5
    assert curve.similarity["ssim"][-1].mean() < 0.5
    # The user's model, its gradients and the global random state are untouched.
    assert_same_state(before, snapshot_state(cnn))
    assert torch.equal(rng, torch.get_rng_state())


def test_seeded_and_independent_order(cnn, images):
    kwargs = dict(targets=1, target_layer="block2", steps=["fc", "block2.0"])
    a = model_parameter_randomisation("gradcam", cnn, images, seed=5, **kwargs)
    b = model_parameter_randomisation("gradcam", cnn, images, seed=5, **kwargs)
    torch.testing.assert_close(a.similarity["ssim"], b.similarity["ssim"], equal_nan=True)
    cascade = model_parameter_randomisation("gradcam", cnn, images, seed=5, **kwargs)
    alone = model_parameter_randomisation("gradcam", cnn, images, seed=5, order="independent", **kwargs)
    torch.testing.assert_close(alone.similarity["ssim"][0], cascade.similarity["ssim"][0])  # same first step
    only_conv = model_parameter_randomisation("gradcam", cnn, images, seed=5, targets=1, target_layer="block2",
                                              steps=["block2.0"])
    torch.testing.assert_close(alone.similarity["ssim"][1], only_conv.similarity["ssim"][0])


def test_streaming_mean_over_batches(cnn, images):
    metric = ModelParameterRandomisation("gradcam", cnn, depth=1, target_layer="block2", seed=2)
    metric.update(images[:2], torch.tensor([0, 1]))
    metric.update(images[2:], torch.tensor([2, 3, 4, 0]))
    result = metric.compute()
    curve = model_parameter_randomisation("gradcam", cnn, images, torch.tensor([0, 1, 2, 3, 4, 0]), depth=1,
                                          target_layer="block2", seed=2)
    assert metric.steps == curve.steps and result["images"] == 6
    for m in ("spearman", "ssim"):
        values = curve.similarity[m].numpy()
        assert result[m] == pytest.approx(np.nanmean(values, axis=1).tolist())
        assert result["undefined"][m] == np.isnan(values).sum(axis=1).tolist()


def test_clear_errors(cnn, images):
    with pytest.raises(ValueError, match="order"):
        model_parameter_randomisation("gradcam", cnn, images, order="bottom_up")
    with pytest.raises(ValueError, match="measures"):
        model_parameter_randomisation("gradcam", cnn, images, measures=("hog",))
    with pytest.raises(AttributeError):
        model_parameter_randomisation("gradcam", cnn, images, steps=["nope"])
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


@pytest.mark.filterwarnings("ignore")
def test_matches_quantus_mprt(cnn, images):
    quantus = pytest.importorskip("quantus")
    targets = torch.arange(6) % 5

    def explain(model, inputs, targets, **kwargs):
        explainer = create_explainer("gradcam", model, target_layer="block2")
        return explainer.explain(torch.as_tensor(inputs), torch.as_tensor(targets)).saliency.numpy()

    mprt = quantus.MPRT(seed=41, layer_order="top_down", disable_warnings=True)
    theirs = mprt(model=cnn, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=None, explain_func=explain,
                  device="cpu", batch_size=6)
    # Quantus re-seeds every layer with seed + 1; exaug with seed.
    ours = model_parameter_randomisation("gradcam", cnn, images, targets, target_layer="block2", seed=42)
    layers = [k for k in theirs if k != "original"]
    assert layers == ours.steps
    for row, layer in enumerate(layers):
        np.testing.assert_allclose(ours.similarity["spearman"][row].numpy(), theirs[layer], rtol=1e-6, atol=1e-9,
                                   err_msg=layer)
