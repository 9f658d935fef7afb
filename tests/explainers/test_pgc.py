"""pytorch-grad-cam: the native Grad-CAM agrees with it, the ``pgc.*`` wrappers equal direct pgc usage, and pgc's
side effects (eval(), zero_grad(), hooks, AblationCAM's layer swap, progress bars) never reach the caller."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import exaug
from exaug.explainers import grad_cam, normalize_saliency
from exaug.testing import assert_same_state, snapshot_state
from exaug.utils.isolation import hook_count

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGETS = [3, 0, 7]


def minmax(maps: np.ndarray) -> torch.Tensor:
    """pgc's numpy ``(B, H, W)`` as ``(B, 1, H, W)``, re-normalised per sample exactly like the base class."""
    return normalize_saliency(torch.from_numpy(np.asarray(maps, dtype=np.float32)).unsqueeze(1))[0]


def direct_pgc(cam_type, model, layers, x, targets, **call_options) -> np.ndarray:
    """Plain pytorch-grad-cam usage, on a copy because it switches the model to eval and leaves gradients."""
    model = copy.deepcopy(model)
    layers = [dict(model.named_modules())[name] for name in layers]
    pgc_targets = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    with cam_type(model, layers) as cam:
        return cam(x, pgc_targets, **call_options)


@pytest.mark.parametrize("layer", ["layer2", "layer1", "layer1.conv2"])
def test_native_gradcam_equals_pgc_in_float64(layer, tiny_resnet64):
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    targets = [1, 5, 9, 0]
    native = exaug.create_explainer("gradcam", tiny_resnet64, target_layer=layer)(x, targets)
    reference = minmax(direct_pgc(pgc.GradCAM, tiny_resnet64, [layer], x, targets))
    # pgc normalises before resizing (with a 1e-7 epsilon) and resizes in float32 with OpenCV.
    assert (native - reference).abs().max() <= 1e-4


def test_native_gradcam_equals_pgc_on_torchvision_resnet18(resnet18_cifar10):
    model = resnet18_cifar10.double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    native = exaug.create_explainer("gradcam", model)
    sal = native(x, [2, 7])
    assert native.layer_name == "layer4"
    reference = minmax(direct_pgc(pgc.GradCAM, model, ["layer4"], x, [2, 7]))
    assert (sal - reference).abs().max() <= 1e-4


def test_signed_native_map_differs_from_relu_only_where_negative(tiny_resnet64):
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    targets = torch.tensor([1, 5, 9, 0])
    signed, _, _ = grad_cam(tiny_resnet64, tiny_resnet64.layer2, x, targets, relu=False)
    rectified, _, _ = grad_cam(tiny_resnet64, tiny_resnet64.layer2, x, targets, relu=True)
    negative = signed < 0
    assert negative.any() and (~negative).any()
    assert torch.equal(rectified[~negative], signed[~negative])
    assert torch.all(rectified[negative] == 0)
    # pgc always rectifies: it matches relu=True, not the signed ExCon map.
    reference = minmax(direct_pgc(pgc.GradCAM, tiny_resnet64, ["layer2"], x, targets.tolist()))
    relu_map = exaug.create_explainer("gradcam", tiny_resnet64, target_layer="layer2", relu=True)(x, targets)
    signed_map = exaug.create_explainer("gradcam", tiny_resnet64, target_layer="layer2", relu=False)(x, targets)
    assert (relu_map - reference).abs().max() <= 1e-4
    assert (signed_map - reference).abs().max() > 1e-2


WRAPPED = [
    ("pgc.gradcam", "GradCAM", {}),
    ("pgc.hirescam", "HiResCAM", {}),
    ("pgc.gradcam_elementwise", "GradCAMElementWise", {}),
    ("pgc.gradcam++", "GradCAMPlusPlus", {}),
    ("pgc.xgradcam", "XGradCAM", {}),
    ("pgc.layercam", "LayerCAM", {}),
    ("pgc.eigencam", "EigenCAM", {}),
    ("pgc.eigengradcam", "EigenGradCAM", {}),
    ("pgc.kpca_cam", "KPCA_CAM", {}),
    ("pgc.fem", "FEM", {}),
    ("pgc.seg_eigencam", "SegEigenCAM", {}),
    ("pgc.shapleycam", "ShapleyCAM", {}),
    ("pgc.randomcam", "RandomCAM", {}),
    ("pgc.scorecam", "ScoreCAM", {}),
    ("pgc.ablationcam", "AblationCAM", {}),
    ("pgc.gradcam", "GradCAM", {"aug_smooth": True}),
    ("pgc.gradcam", "GradCAM", {"eigen_smooth": True}),
]


@pytest.mark.parametrize("name,cam_class,options", WRAPPED, ids=[f"{n}{sorted(o)}" for n, _, o in WRAPPED])
def test_wrapper_equals_direct_pgc(name, cam_class, options, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    np.random.seed(0)  # RandomCAM
    ours = exaug.create_explainer(name, tiny_resnet64, target_layer="layer2", **options)(x, TARGETS)
    np.random.seed(0)
    reference = direct_pgc(getattr(pgc, cam_class), tiny_resnet64, ["layer2"], x, TARGETS, **options)
    torch.testing.assert_close(ours, minmax(reference), rtol=0, atol=1e-6)


def test_fullgrad_equals_direct_pgc_and_takes_no_layer(tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    ours = exaug.create_explainer("pgc.fullgrad", tiny_resnet64)(x, TARGETS)
    reference = direct_pgc(pgc.FullGrad, tiny_resnet64, [], x, TARGETS)
    torch.testing.assert_close(ours, minmax(reference), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="does not use a target_layer"):
        exaug.create_explainer("pgc.fullgrad", tiny_resnet64, target_layer="layer2")


def test_finercam_predicted_class_equals_pgc_default_and_alpha_zero_is_gradcam(tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    ours = exaug.create_explainer("pgc.finercam", tiny_resnet64, target_layer="layer2").explain(x)
    # pgc's FinerCAM picks the predicted class and its three closest classes itself when given no targets.
    reference = direct_pgc(pgc.FinerCAM, tiny_resnet64, ["layer2"], x, None)
    torch.testing.assert_close(ours.saliency, minmax(reference), rtol=0, atol=1e-6)
    no_comparison = exaug.create_explainer("pgc.finercam", tiny_resnet64, target_layer="layer2", alpha=0.0)
    gradcam = exaug.create_explainer("pgc.gradcam", tiny_resnet64, target_layer="layer2")
    torch.testing.assert_close(no_comparison(x, TARGETS), gradcam(x, TARGETS), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="does not support aug_smooth"):
        exaug.create_explainer("pgc.finercam", tiny_resnet64, aug_smooth=True)


def test_ablationcam_puts_the_layer_back_even_on_errors(make_tiny_resnet, monkeypatch):
    model = make_tiny_resnet()
    original = model.layer2
    x = torch.randn(2, 3, 16, 16)
    explainer = exaug.create_explainer("pgc.ablationcam", model, target_layer="layer2", batch_size=4)
    before = snapshot_state(model)

    def fail(*args, **kwargs):
        assert not isinstance(model.layer2, type(original)), "the ablation layer should be in place here"
        raise RuntimeError("boom in the middle of the ablation")

    monkeypatch.setattr(pgc.AblationCAM, "assemble_ablation_scores", fail)
    with pytest.raises(RuntimeError, match="boom"):
        explainer(x, [1, 2])
    assert model.layer2 is original
    assert not any(isinstance(m, pgc.AblationLayer) for m in model.modules())
    assert_same_state(before, snapshot_state(model))
    monkeypatch.undo()
    assert explainer(x, [1, 2]).shape == (2, 1, 16, 16)
    assert model.layer2 is original
    assert_same_state(before, snapshot_state(model))


def test_pgc_side_effects_do_not_leak(make_tiny_resnet):
    """pgc calls model.eval() in its constructor and zero_grad() + backward() on every call."""
    model = make_tiny_resnet()
    grads = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = grads[n]
    hooks = hook_count(model)
    exaug.create_explainer("pgc.gradcam", model)(torch.randn(2, 3, 16, 16), [0, 1])
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is grads[n] and torch.all(p.grad == 0.5) for n, p in model.named_parameters())
    assert hook_count(model) == hooks


def test_progress_bars_are_silenced(tiny_resnet, capsys):
    x = torch.randn(2, 3, 16, 16)
    for name in ("pgc.scorecam", "pgc.ablationcam"):
        exaug.create_explainer(name, tiny_resnet)(x, [0, 1])
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    import pytorch_grad_cam.score_cam

    assert pytorch_grad_cam.score_cam.tqdm.__name__ == "tqdm"  # restored


# -- the table the pgc.* backends are generated from --------------------------------------------------------------

# Independent of the table: the registered names, their pgc classes and their own constructor options as they were
# hand-written before the table existed.
EXPECTED_BACKENDS = {
    "pgc.gradcam": ("PGCGradCAM", "GradCAM", {}),
    "pgc.hirescam": ("PGCHiResCAM", "HiResCAM", {}),
    "pgc.gradcam_elementwise": ("PGCGradCAMElementWise", "GradCAMElementWise", {}),
    "pgc.gradcam++": ("PGCGradCAMPlusPlus", "GradCAMPlusPlus", {}),
    "pgc.xgradcam": ("PGCXGradCAM", "XGradCAM", {}),
    "pgc.layercam": ("PGCLayerCAM", "LayerCAM", {}),
    "pgc.eigencam": ("PGCEigenCAM", "EigenCAM", {}),
    "pgc.eigengradcam": ("PGCEigenGradCAM", "EigenGradCAM", {}),
    "pgc.kpca_cam": ("PGCKPCACAM", "KPCA_CAM", {"kernel": "sigmoid", "gamma": None}),
    "pgc.fem": ("PGCFEM", "FEM", {"k": 2.0}),
    "pgc.seg_eigencam": ("PGCSegEigenCAM", "SegEigenCAM", {}),
    "pgc.shapleycam": ("PGCShapleyCAM", "ShapleyCAM", {}),
    "pgc.randomcam": ("PGCRandomCAM", "RandomCAM", {}),
    "pgc.scorecam": ("PGCScoreCAM", "ScoreCAM", {"batch_size": 16}),
    "pgc.ablationcam": ("PGCAblationCAM", "AblationCAM", {"batch_size": 32, "ratio_channels_to_ablate": 1.0}),
    "pgc.fullgrad": ("PGCFullGrad", "FullGrad", {}),
    "pgc.finercam": ("PGCFinerCAM", "FinerCAM", {"alpha": 1.0, "comparison_categories": (1, 2, 3)}),
}


def test_every_table_row_is_a_registered_importable_class():
    import pickle

    from exaug.explainers import pgc as module

    assert exaug.list_explainers("pgc.*") == sorted(EXPECTED_BACKENDS)
    assert sorted(module.__all__) == sorted(["PGCExplainer", *(c for c, _, _ in EXPECTED_BACKENDS.values())])
    descriptions = exaug.describe_explainers()
    for name, (class_name, cam_class, defaults) in EXPECTED_BACKENDS.items():
        cls = getattr(module, class_name)
        assert cls.__name__ == class_name and cls.__module__ == module.__name__
        assert issubclass(cls, module.PGCExplainer) and cls.cam_class == cam_class
        assert hasattr(pgc, cam_class), f"{cam_class} is not a pytorch_grad_cam class"
        assert descriptions[name] == cls.description and cls.__doc__.strip()
        assert pickle.loads(pickle.dumps(cls)) is cls
        explainer = exaug.create_explainer(name, torch.nn.Conv2d(3, 2, 1))
        assert type(explainer) is cls
        assert {option: getattr(explainer, option) for option in defaults} == defaults
        assert explainer.uses_layer is (name != "pgc.fullgrad")


def test_option_defaults_are_documented_in_the_generated_docstrings():
    from exaug.explainers import pgc as module

    assert "kernel: " in module.PGCKPCACAM.__doc__ and "``'sigmoid'``" in module.PGCKPCACAM.__doc__
    assert "ratio_channels_to_ablate" in module.PGCAblationCAM.__doc__
    assert "AblationLayer" in module.PGCAblationCAM.__doc__  # the special handling is described too


def test_table_options_are_validated_and_reach_pgc(tiny_resnet):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        exaug.create_explainer("pgc.scorecam", tiny_resnet, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        exaug.create_explainer("pgc.ablationcam", tiny_resnet, batch_size=True)
    with pytest.raises(ValueError, match=r"ratio_channels_to_ablate must be in \(0, 1\]"):
        exaug.create_explainer("pgc.ablationcam", tiny_resnet, ratio_channels_to_ablate=0.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'kernal'"):
        exaug.create_explainer("pgc.kpca_cam", tiny_resnet, kernal="rbf")
    fem = exaug.create_explainer("pgc.fem", tiny_resnet, target_layer="layer2", k=0.5)
    assert fem._cam_kwargs() == {"k": 0.5}
    score = exaug.create_explainer("pgc.scorecam", tiny_resnet, target_layer="layer2", batch_size=3)
    assert score._create_cam().batch_size == 3
    ablation = exaug.create_explainer("pgc.ablationcam", tiny_resnet, target_layer="layer2", batch_size=5)
    first, second = ablation._cam_kwargs(), ablation._cam_kwargs()
    assert first["batch_size"] == 5 and first["ratio_channels_to_ablate"] == 1.0
    assert first["ablation_layer"] is not second["ablation_layer"]  # a fresh AblationLayer per call


@pytest.mark.parametrize("k", [0.5, 3.0])
def test_fem_option_changes_the_map_like_direct_pgc(k, tiny_resnet64):
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = exaug.create_explainer("pgc.fem", tiny_resnet64, target_layer="layer2", k=k)(x, TARGETS)
    model = copy.deepcopy(tiny_resnet64)
    with pgc.FEM(model, [model.layer2], k=k) as cam:
        reference = cam(x, [ClassifierOutputTarget(t) for t in TARGETS])
    torch.testing.assert_close(ours, minmax(reference), rtol=0, atol=1e-6)
