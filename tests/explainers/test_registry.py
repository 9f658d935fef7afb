from __future__ import annotations

import pytest
import torch
from torch import nn

import exaug
from exaug.explainers import GradCAM, resolve_explainer, unregister_explainer


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
        exaug.explainers.unregister_explainer(name)
    assert not exaug.is_explainer(name) and name not in exaug.describe_explainers()


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
    from exaug.explainers import explainer_accepts, register_explainer, unregister_explainer

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
        unregister_explainer("test.kwargs_factory")
    with pytest.raises(ValueError, match="Did you mean"):
        explainer_accepts("integrated_gradient", "n_steps")


# -- list_explainers(pattern), is_explainer, unregister_explainer ---------------------------------------------


@pytest.mark.parametrize("pattern", ["pgc.*", "*cam*", "pgc.gradcam?+", "[rs]*", "gradcam", "nothing*", "PGC.*"])
def test_list_explainers_pattern_equals_a_naive_wildcard_filter(pattern):
    import re

    # Independent reference: translate the shell wildcard by hand (no fnmatch), case-sensitively.
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else c if c in "[]" else re.escape(c) for c in pattern
    )
    expected = sorted(name for name in exaug.list_explainers() if re.fullmatch(regex, name))
    assert exaug.list_explainers(pattern) == expected


def test_list_explainers_pattern_examples():
    pgc_names = exaug.list_explainers("pgc.*")
    assert len(pgc_names) == 17 and all(n.startswith("pgc.") for n in pgc_names)
    assert exaug.list_explainers("gradcam") == ["gradcam"]
    assert exaug.list_explainers("PGC.*") == []  # names are case-sensitive
    assert exaug.list_explainers(None) == exaug.list_explainers() == sorted(exaug.describe_explainers())
    with pytest.raises(TypeError, match="pattern"):
        exaug.list_explainers(3)


def test_is_explainer_never_raises():
    assert exaug.is_explainer("gradcam") and exaug.is_explainer("pgc.gradcam++")
    assert not exaug.is_explainer("gradkam")
    assert not exaug.is_explainer(None) and not exaug.is_explainer(["gradcam"])


def test_unregister_unknown_name_lists_valid_and_suggests():
    with pytest.raises(ValueError, match="Did you mean 'gradcam'?.*Valid names:"):
        unregister_explainer("gradkam")
    assert exaug.is_explainer("gradcam")


# -- resolve_explainer -----------------------------------------------------------------------------------------


def test_resolve_explainer_name_builds_like_create_explainer(tiny_resnet, images16):
    built = resolve_explainer("gradcam", tiny_resnet, target_layer="layer1", relu=False)
    reference = exaug.create_explainer("gradcam", tiny_resnet, target_layer="layer1", relu=False)
    assert isinstance(built, GradCAM) and built.layer_name == "layer1" and built.relu is False
    torch.testing.assert_close(built(images16, [0, 1, 2]), reference(images16, [0, 1, 2]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="Did you mean 'gradcam'"):
        resolve_explainer("gradkam", tiny_resnet)
    with pytest.raises(ValueError, match="does not use a target_layer"):
        resolve_explainer("random", tiny_resnet, target_layer="layer1")


def test_resolve_explainer_returns_instances_and_callables_as_is(tiny_resnet):
    explainer = exaug.create_explainer("random", tiny_resnet)

    def saliency(images, targets):
        return images.mean(1, keepdim=True)

    class CallableObject:
        def __call__(self, images, targets):
            return images.mean(1, keepdim=True)

    obj = CallableObject()
    assert resolve_explainer(explainer, tiny_resnet) is explainer
    assert resolve_explainer(saliency, tiny_resnet) is saliency
    assert resolve_explainer(obj, tiny_resnet) is obj


@pytest.mark.parametrize("options", [{"target_layer": "layer1"}, {"relu": False}, {"target_layer": "x", "seed": 0}])
def test_resolve_explainer_rejects_options_without_a_name(tiny_resnet, options):
    explainer = exaug.create_explainer("gradcam", tiny_resnet)
    for spec in (explainer, lambda images, targets: images):
        with pytest.raises(ValueError, match="apply only when the explainer is given by name") as info:
            resolve_explainer(spec, tiny_resnet, **options)
        assert all(name in str(info.value) for name in options)


@pytest.mark.parametrize("spec", [None, 3, 1.5, torch.zeros(1), ["gradcam"]])
def test_resolve_explainer_rejects_other_types_naming_the_argument(tiny_resnet, spec):
    with pytest.raises(TypeError, match=rf"explainer must be a registered name.*got {type(spec).__name__}"):
        resolve_explainer(spec, tiny_resnet)


def test_resolve_explainer_is_exported_at_every_level():
    assert exaug.resolve_explainer is exaug.explainers.resolve_explainer is resolve_explainer
    assert exaug.is_explainer is exaug.explainers.is_explainer
    assert exaug.list_explainers is exaug.explainers.list_explainers
