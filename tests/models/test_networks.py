"""``build_networks``: the run's encoder + head and separate linear classifier, without a TrainConfig."""

from __future__ import annotations

import pytest
import torch

from exaug.models import LinearClassifier, SupConModel, build_networks, create_encoder


def test_same_modules_and_initial_weights_as_building_them_by_hand():
    torch.manual_seed(0)
    model, classifier = build_networks("resnet18", num_classes=7, image_size=32, width=0.125, head="linear",
                                       feat_dim=12)
    torch.manual_seed(0)  # the same draws in the same order: encoder, head, classifier
    encoder = create_encoder("resnet18", width=0.125, image_size=32)
    want_model = SupConModel(encoder, head="linear", feat_dim=12)
    want_classifier = LinearClassifier(encoder.num_features, 7)
    for got, want in ((model, want_model), (classifier, want_classifier)):
        assert type(got) is type(want)
        got_state, want_state = got.state_dict(), want.state_dict()
        assert got_state.keys() == want_state.keys()
        for name in want_state:
            assert torch.equal(got_state[name], want_state[name]), name
    assert not hasattr(model, "classifier") or model.classifier is None  # the classifier is kept separate
    images = torch.rand(3, 3, 32, 32)
    assert model(images).shape == (3, 12) and classifier(model.encoder(images)).shape == (3, 7)


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True])
def test_bad_num_classes_is_named(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        build_networks("resnet18", num_classes=num_classes, image_size=32, width=0.125)
