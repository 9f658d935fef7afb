"""Bad or unusual inputs get a clear early error or a correct result, and stochastic backends own their randomness.

Covers: ``create_explainer(None)``, a target layer the forward never runs (every layer backend), half precision into
the ``pgc.*`` backends, NaN / Inf images (every backend), ``torch.inference_mode()`` callers, and the ``seed`` /
``generator`` options checked against the libraries called directly with the same seed.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

import exaug
from exaug.explainers import explainer_uses_layer, layer_activation_and_gradient, normalize_saliency
from exaug.explainers.layers import layer_called
from exaug.explainers.randomness import RandomSource, seed_from_generator
from exaug.explainers.rise import plan_masks
from exaug.targets import sample_corpus, sample_foil
from exaug.testing import assert_same_state, snapshot_state

from .test_contract import FAST_OPTIONS, NAMES, check_saliency, make

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")

TARGETS = torch.tensor([3, 0, 7])
LAYER_NAMES = [name for name in NAMES if explainer_uses_layer(name) and name != "pgc.fullgrad"]


def clone(generator: torch.Generator) -> torch.Generator:
    copy_ = torch.Generator(device=generator.device)
    copy_.set_state(generator.get_state())
    return copy_


def global_rng_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def assert_same_rng_states(before, after) -> None:
    assert torch.equal(before[0], after[0]), "torch's global RNG moved"
    same_numpy = before[1][0] == after[1][0] and np.array_equal(before[1][1], after[1][1])
    assert same_numpy and before[1][2:] == after[1][2:], "numpy's global RNG moved"
    assert before[2] == after[2], "Python's global RNG moved"


def images(seed: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, dtype=dtype, generator=torch.Generator().manual_seed(seed))


class WithUnusedLayer(nn.Module):
    """A tiny ResNet with a convolution that is defined but never called in the forward."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.net = resnet
        self.spare = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- clear errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, 3, ("gradcam",)])
def test_create_explainer_needs_a_string_name(name):
    with pytest.raises(TypeError, match=r"^name must be a registered explainer name .* got "):
        exaug.create_explainer(name, nn.Linear(1, 1))


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_a_layer_that_never_runs_is_named(name, make_tiny_resnet):
    model = WithUnusedLayer(make_tiny_resnet())
    before = snapshot_state(model)
    explainer = make(name, model, target_layer="spare")
    with pytest.raises(ValueError, match=r"target_layer 'spare' \(Conv2d\) was not called during the model's forward"):
        explainer(images(), TARGETS)
    assert_same_state(before, snapshot_state(model))  # the counting hooks are gone too


def test_native_function_names_the_layer_that_never_runs(make_tiny_resnet):
    model = WithUnusedLayer(make_tiny_resnet())
    with pytest.raises(ValueError, match="target_layer 'spare'"):
        layer_activation_and_gradient(model, model.spare, images(), TARGETS)


def test_errors_before_any_forward_keep_their_own_message(make_tiny_resnet):
    """Only a layer that missed a forward that did run is blamed: an earlier error propagates unchanged."""
    model = WithUnusedLayer(make_tiny_resnet())
    with pytest.raises(KeyError, match="early"):
        with layer_called(model, model.spare, "spare"):
            raise KeyError("early")
    with layer_called(model, model.net.layer2, "net.layer2"):
        model(images())  # the layer ran: no error


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_images_are_refused_by_every_backend(name, bad, tiny_resnet):
    x = images()
    x[2, 1, 4, 5] = bad
    message = r"images must be finite, but 1 sample\(s\) hold NaN or Inf values \(indices 2\)"
    with pytest.raises(ValueError, match=message):
        make(name, tiny_resnet)(x, TARGETS)


def test_relax_importance_refuses_non_finite_images(tiny_resnet):
    x = images()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images must be finite"):
        exaug.create_explainer("relax", tiny_resnet, n_masks=8).importance_and_uncertainty(x)


# -- half precision into pytorch-grad-cam -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", exaug.list_explainers("pgc.*"))
def test_pgc_explains_half_precision_models(name, dtype, make_tiny_resnet):
    """pgc goes through numpy (no bfloat16) and LAPACK (no float16): the maps are computed in float32 and stay close to
    the float32 model's maps; the two methods whose library code converts model tensors itself refuse bfloat16."""
    model32 = make_tiny_resnet().eval()
    model = copy.deepcopy(model32).to(dtype)
    before = snapshot_state(model)
    x = images()
    if dtype is torch.bfloat16 and name in ("pgc.fullgrad", "pgc.shapleycam"):
        with pytest.raises(TypeError, match="cannot explain images of dtype torch.bfloat16"):
            make(name, model)(x.to(dtype), TARGETS)
        return
    options = {"seed": 0} if name in ("pgc.randomcam", "pgc.kpca_cam") else {}
    sal = make(name, model, **options)(x.to(dtype), TARGETS)
    check_saliency(sal, x)
    assert_same_state(before, snapshot_state(model))
    if name in ("pgc.gradcam", "pgc.layercam", "pgc.hirescam", "pgc.xgradcam", "pgc.gradcam_elementwise"):
        # Smooth methods: the half-precision map is the float32 map up to the rounding of the half model.
        reference = make(name, model32, **options)(x, TARGETS)
        assert (sal - reference).abs().mean() < 0.05


# -- inference mode -----------------------------------------------------------------------------------------------


def test_inference_mode_map_equals_the_normal_map_and_is_an_ordinary_tensor(tiny_resnet):
    reference = exaug.create_explainer("gradcam", tiny_resnet)(images(), TARGETS)
    with torch.inference_mode():
        x, targets = images(), TARGETS.clone()
        assert x.is_inference() and targets.is_inference()
        exp = exaug.create_explainer("gradcam", tiny_resnet).explain(x, targets)
        assert torch.is_inference_mode_enabled()
    assert not exp.saliency.is_inference() and not exp.targets.is_inference()
    torch.testing.assert_close(exp.saliency, reference)


# -- randomness: seed / generator against the libraries called directly ----------------------------------------------


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


SAMPLED = {
    "smoothgrad": (
        {"nt_samples": 3, "stdevs": 0.3},
        lambda m, x: captum_attr.NoiseTunnel(captum_attr.Saliency(m)).attribute(
            x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=3, stdevs=0.3, target=TARGETS, abs=False
        ),
    ),
    "gradient_shap": (
        {"n_samples": 4, "baselines": torch.zeros(2, 3, 16, 16), "stdevs": 0.1},
        lambda m, x: captum_attr.GradientShap(m).attribute(
            x.clone().requires_grad_(True), baselines=torch.zeros(2, 3, 16, 16), n_samples=4, stdevs=0.1, target=TARGETS
        ),
    ),
}


@pytest.mark.parametrize("name", SAMPLED)
def test_captum_sampling_is_seeded_from_the_explainer(name, tiny_resnet):
    options, direct = SAMPLED[name]
    x = images()
    before = global_rng_states()
    fixed = exaug.create_explainer(name, tiny_resnet, seed=11, **options)
    first, again = fixed(x, TARGETS), fixed(x, TARGETS)
    other = exaug.create_explainer(name, tiny_resnet, seed=12, **options)(x, TARGETS)
    generator = torch.Generator().manual_seed(3)
    replay = clone(generator)
    streamed = exaug.create_explainer(name, tiny_resnet, generator=generator, **options)
    stream = [streamed(x, TARGETS) for _ in range(2)]
    assert_same_rng_states(before, global_rng_states())

    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert not torch.equal(stream[0], stream[1])  # the generator advances: a new draw per call
    for expected_map in stream:  # the library itself, run on global RNGs seeded as the explainer says
        seed_all(seed_from_generator(replay))
        reference = direct(copy.deepcopy(tiny_resnet).eval(), x)
        torch.testing.assert_close(expected_map, normalize_saliency(reference.abs().sum(1, keepdim=True))[0])
    seed_all(11)
    reference = direct(copy.deepcopy(tiny_resnet).eval(), x)
    torch.testing.assert_close(first, normalize_saliency(reference.abs().sum(1, keepdim=True))[0])


def test_random_saliency_draws_from_its_generator(tiny_resnet):
    generator = torch.Generator().manual_seed(4)
    replay = clone(generator)
    explainer = exaug.create_explainer("random", tiny_resnet, generator=generator)
    before = global_rng_states()
    maps = [explainer(images(), TARGETS) for _ in range(2)]
    assert_same_rng_states(before, global_rng_states())
    for sal in maps:
        torch.testing.assert_close(sal, normalize_saliency(torch.rand(3, 1, 16, 16, generator=replay))[0])


def test_random_saliency_without_seed_follows_the_global_seed_without_advancing_it(tiny_resnet):
    torch.manual_seed(21)
    first = exaug.create_explainer("random", tiny_resnet)(images(), TARGETS)
    state = torch.get_rng_state()
    torch.manual_seed(21)
    assert torch.equal(first, exaug.create_explainer("random", tiny_resnet)(images(), TARGETS))
    assert torch.equal(state, torch.get_rng_state())
    expected = normalize_saliency(torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(21)))[0]
    torch.testing.assert_close(first, expected)


def test_rise_masks_come_from_the_generator(tiny_resnet):
    generator = torch.Generator().manual_seed(9)
    replay = clone(generator)
    explainer = exaug.create_explainer("rise", tiny_resnet, n_masks=16, grid=4, generator=generator)
    plans = [plan_masks(16, (16, 16), 4, 0.5, generator=replay) for _ in range(2)]
    first, second = explainer(images(), TARGETS), explainer(images(), TARGETS)
    assert not torch.equal(first, second)
    fresh = plan_masks(16, (16, 16), 4, 0.5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(plans[0].grids, fresh.grids)
    assert not torch.equal(plans[0].grids, plans[1].grids)
    # The same generator state gives the same map (the masks are all that is random).
    again = exaug.create_explainer("rise", tiny_resnet, n_masks=16, grid=4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(again(images(), TARGETS), first, rtol=0, atol=0)
    assert "generator" in repr(explainer) and "seed=0" in repr(exaug.create_explainer("rise", tiny_resnet))


def test_pgc_randomcam_seed_equals_pgc_under_that_seed(tiny_resnet):
    from pytorch_grad_cam import RandomCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = images()
    before = global_rng_states()
    ours = exaug.create_explainer("pgc.randomcam", tiny_resnet, target_layer="layer2", seed=7)(x, TARGETS)
    assert_same_rng_states(before, global_rng_states())
    seed_all(7)
    model = copy.deepcopy(tiny_resnet)
    cam = RandomCAM(model, [model.layer2])
    pgc_targets = [ClassifierOutputTarget(t) for t in TARGETS.tolist()]
    reference = torch.from_numpy(cam(x.clone().requires_grad_(True), pgc_targets))
    cam.activations_and_grads.release()
    torch.testing.assert_close(ours, normalize_saliency(reference.unsqueeze(1).float())[0])


@pytest.mark.parametrize(
    "name, options, error, message",
    [
        ("smoothgrad", {"seed": 1, "generator": torch.Generator()}, ValueError, "either seed or generator"),
        ("gradient_shap", {"seed": "a"}, ValueError, "seed must be an int"),
        ("random", {"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ("rise", {"seed": 1, "generator": torch.Generator()}, ValueError, "either seed or generator"),
        ("pgc.gradcam", {"seed": 1}, ValueError, "deterministic"),
    ],
)
def test_bad_random_options_name_the_argument(name, options, error, message, tiny_resnet):
    with pytest.raises(error, match=message):
        exaug.create_explainer(name, tiny_resnet, **options)


def test_random_source_restores_states_on_errors():
    before = global_rng_states()
    with pytest.raises(RuntimeError, match="inside"):
        with RandomSource(seed=3).global_rngs("cpu"):
            torch.rand(3), np.random.rand(), random.random()
            raise RuntimeError("inside")
    assert_same_rng_states(before, global_rng_states())


def test_corpus_and_foil_sampling_leave_the_global_rngs_alone():
    data = [(torch.full((3, 4, 4), float(i)), i % 3) for i in range(30)]
    before = global_rng_states()
    foil, corpus = sample_foil(data, 5, seed=1), sample_corpus(data, 2, 4, seed=1)
    assert_same_rng_states(before, global_rng_states())
    assert torch.equal(foil, sample_foil(data, 5, seed=1)) and not torch.equal(foil, sample_foil(data, 5, seed=2))
    assert all(int(image[0, 0, 0]) % 3 == 2 for image in corpus)
