"""The reference preset reproduces the ExCon reference procedure, transcribed here with Captum directly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from exaug.augment import ExplanationMaskAugment, explainer_preset_options, reference_explainer_options
from exaug.models import create_model

captum_attr = pytest.importorskip("captum.attr")


def reference_procedure(model, layer, images, labels):
    """The reference code's steps (NOTES §2/§10): Captum LayerGradCam with relu_attributions=False, bilinear
    upsample, per-sample min-max, keep > 0.5, zero fill, then the classifier's verdict on the masked image."""
    cam = captum_attr.LayerGradCam(model, layer).attribute(images, target=labels, relu_attributions=False)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    normalised = ((flat - lo) / (hi - lo)).view_as(cam)
    keep = normalised > 0.5
    masked = images * keep
    with torch.no_grad():
        correct = model(masked).argmax(1) == labels
    return keep, masked, correct


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_preset_masks_equal_the_reference_procedure(seed):
    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=10, width=0.25).as_classifier().eval()
    images = torch.randn(8, 3, 32, 32)
    labels = torch.randint(0, 10, (8,))
    aug = ExplanationMaskAugment.reference("resnet18", image_size=32)
    params = aug.draw(images, labels, model)
    keep, masked, correct = reference_procedure(model, model.encoder.layer2[1].conv2, images, labels)
    assert torch.equal(params.keep, keep)
    assert torch.equal(params.masked, masked)
    assert torch.equal(params.correct, correct)
    # The ReLU default is a different procedure: its masks differ on these batches.
    relu = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "encoder.layer2.1.conv2"})
    assert not torch.equal(relu.draw(images, labels, model).keep, keep)


def test_reference_options_and_preset_errors():
    assert reference_explainer_options("resnet50", 64) == {"target_layer": "encoder.layer4.2.conv3", "relu": False}
    with pytest.raises(ValueError, match="no explanation layer for 'resnet34'"):
        ExplanationMaskAugment.reference("resnet34")
    with pytest.raises(ValueError, match="explainer_preset 'reference' uses the explainer 'gradcam'.*'rise'"):
        explainer_preset_options("reference", "rise")
    with pytest.raises(ValueError, match="explainer_preset must be one of exaug, reference"):
        explainer_preset_options("paper", "gradcam")


def test_train_with_the_reference_preset(tmp_path):
    from exaug.cli import main
    from exaug.training import load_run

    out = tmp_path / "ref"
    argv = ["train", "--dataset", "synthetic", "--epochs", "1", "--train-samples", "16", "--eval-samples", "8",
            "--batch-size", "8", "--width", "0.0625", "--feat-dim", "16", "--model", "resnet18", "--quiet",
            "--device", "cpu", "--method", "exconb", "--image-size", "64", "--explainer-preset", "reference",
            "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["explainer_preset"] == "reference"
    run = load_run(out)
    assert run.resolved["explainer_layer"] == "encoder.layer4.1.conv2"
    from exaug.evaluation.context import build_run_explainer

    explainer, info = build_run_explainer(run, None, None)
    assert info["options"] == {"relu": False} and info["target_layer"] == "encoder.layer4.1.conv2"
    assert main([*argv[:-1], str(tmp_path / "bad"), "--explainer", "rise"]) == 2  # one-line usage error
