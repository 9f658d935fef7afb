from __future__ import annotations

import pytest
import torch
from torch import nn

import exaug
from exaug.explainers import registry


def test_register_create_and_describe_a_user_backend():
    name = "test.input_abs"

    @exaug.register_explainer(name)
    class InputAbs(exaug.Explainer):
        """Absolute input values summed over channels."""

        def _attribute(self, images, targets):
            with torch.no_grad():
                logits = self.model(images)
            return images.abs().sum(1, keepdim=True), logits, logits.argmax(1) if targets is None else targets

    try:
        assert name in exaug.list_explainers()
        assert exaug.describe_explainers()[name] == "Absolute input values summed over channels."
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        x = torch.randn(2, 3, 2, 2)
        sal = exaug.create_explainer(name, model)(x)
        ref = x.abs().sum(1, keepdim=True).flatten(1)
        ref = (ref - ref.min(1, keepdim=True).values) / (ref.max(1, keepdim=True).values - ref.min(1, keepdim=True).values)
        torch.testing.assert_close(sal.flatten(1), ref)
        with pytest.raises(ValueError, match="already registered"):
            exaug.register_explainer(name)(lambda model: None)
    finally:
        registry._REGISTRY.pop(name)
        registry._DESCRIPTIONS.pop(name)


def test_unknown_name_lists_valid_and_suggests():
    with pytest.raises(ValueError) as info:
        exaug.create_explainer("gradkam", nn.Linear(1, 1))
    msg = str(info.value)
    assert "Did you mean 'gradcam'?" in msg and "Valid names:" in msg and "random" in msg


def test_every_registered_name_has_a_description():
    described = exaug.describe_explainers()
    assert list(described) == exaug.list_explainers()
    assert all(text.strip() for text in described.values())


def test_explainer_accepts_reads_the_factory_signature():
    from exaug.explainers import explainer_accepts, register_explainer

    assert explainer_accepts("integrated_gradients", "channel_reduction")
    assert explainer_accepts("integrated_gradients", "n_steps")
    assert not explainer_accepts("gradcam", "channel_reduction")
    assert not explainer_accepts("rise", "channel_reduction")

    @register_explainer("test.kwargs_factory", "a plain factory taking **options")
    def kwargs_factory(model, **options):
        return exaug.create_explainer("random", model)

    try:
        assert explainer_accepts("test.kwargs_factory", "anything")
    finally:
        registry._REGISTRY.pop("test.kwargs_factory")
        registry._DESCRIPTIONS.pop("test.kwargs_factory")
    with pytest.raises(ValueError, match="Did you mean"):
        explainer_accepts("integrated_gradient", "n_steps")
