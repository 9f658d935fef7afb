"""The augment (and the explainers) refuse or flag a model that does not return class logits; non-finite
originals are never counted as correctly classified; views that require grad route like any others."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug import Classifier
from exaug.augment import ExplanationMaskAugment
from exaug.explainers import create_explainer


class Embedder(nn.Module):
    """SupContrast's SupConResNet in miniature: images -> L2-normalised 32-d projections."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(x)), dim=1)


def test_embedding_model_warns_once_naming_the_fix(batch):
    x, v1, v2, y = batch
    model = Embedder()
    aug = ExplanationMaskAugment("gradcam", explainer_options={"target_layer": "encoder.0"})
    with pytest.warns(UserWarning, match=r"normalised embeddings.*exaug\.Classifier\(encoder, linear\)") as record:
        aug(x, (v1, v2), y, model)
    assert len([w for w in record if "normalised embeddings" in str(w.message)]) == 1  # explainer + augment: once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug(x, (v1, v2), y, model)  # once per model, not per batch


def test_the_fix_silences_the_warning(batch, cnn):
    x, v1, v2, y = batch
    encoder = nn.Sequential(*cnn.features, cnn.pool, nn.Flatten())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ExplanationMaskAugment("gradcam")(x, (v1, v2), y, Classifier(encoder, cnn.fc))


def test_explainer_alone_warns_on_embeddings():
    explainer = create_explainer("gradcam", Embedder(), target_layer="encoder.0")
    with pytest.warns(UserWarning, match="exaug.Classifier"):
        explainer.explain(torch.randn(2, 3, 8, 8), targets=torch.tensor([0, 1]))


@pytest.mark.parametrize("explainer", ["callable", "predicted"])
def test_too_few_logits_for_the_labels_is_a_clear_error(batch, cnn, explainer):
    # A callable explainer never range-checks labels and target="predicted" explains the argmax: the augment's
    # own check must catch the label beyond the model's 5 classes.
    x, v1, v2, y = batch
    y = y.clone()
    y[3] = 7
    if explainer == "callable":
        aug = ExplanationMaskAugment(lambda images, targets: images.mean(1, keepdim=True))
    else:
        aug = ExplanationMaskAugment("gradcam", target="predicted")
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\] \(model returns 5 logits"):
        aug(x, (v1, v2), y, cnn)


def test_model_output_that_is_not_b_by_k_is_a_clear_error(batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment(lambda images, targets: images.mean(1, keepdim=True))
    with pytest.raises(ValueError, match=r"model must return logits of shape \(B, K\) = \(12, K\)"):
        aug(x, (v1, v2), y, nn.Conv2d(3, 5, 1))


class ConstantClassifier(nn.Module):
    """Predicts class 0 for every finite image; zero weights turn an inf pixel into NaN logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_pixel_never_counts_as_correct_for_class_0(batch, bad):
    x, v1, v2, _ = batch
    x = x.clone()
    x[2, 1, 15, 15] = bad
    labels = torch.zeros(12, dtype=torch.long)
    ramp = torch.linspace(0, 1, 256).view(1, 1, 16, 16)  # the corrupt pixel is the most salient: it is kept
    aug = ExplanationMaskAugment(lambda images, targets: ramp.expand(images.shape[0], -1, -1, -1), mode="excon")
    out = aug(x, (v1, v2), labels, ConstantClassifier())
    expected = torch.ones(12, dtype=torch.bool)
    expected[2] = False
    assert torch.equal(out.correct, expected)
    assert torch.equal(out.images[2], v1[2])  # the backup view, not the corrupt masked image


def test_views_that_require_grad_route_identically_and_backpropagate(batch, cnn):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", mode="exconb")
    params = aug.draw(x, y, cnn)
    plain = aug.apply(x, (v1, v2), y, params)
    g1, g2 = v1.clone().requires_grad_(), v2.clone().requires_grad_()
    routed = aug.apply(x, (g1, g2), y, params)
    assert torch.equal(routed.images, plain.images) and torch.equal(routed.background, plain.background)
    routed.images.sum().backward()
    # view1 rows replaced by a correct mask get no gradient; view2 rows always do.
    assert torch.equal(g1.grad[:, 0, 0, 0] == 0, params.correct) and torch.all(g2.grad == 1)
