"""The mixing-family trainer methods: registration, the papers' defaults, option checks, and one real step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exaug.augment import AttentiveCutMix, CutMix, SnapMix
from exaug.training import Trainer, list_methods

FAMILY = ("cutmix", "mixup", "saliencymix", "keepcutout", "keepautoaugment", "attentive_cutmix", "snapmix", "sgt")


def test_registered():
    assert set(FAMILY) <= set(list_methods())


@pytest.mark.parametrize("method, option, bad", [("attentive_cutmix", "top_k", 50), ("snapmix", "alpha", 0),
                                                 ("saliencymix", "explainer", "gradkam"), ("sgt", "fraction", 2.0),
                                                 ("cutmix", "prob", 1.5)])
def test_bad_options_fail_early(tiny_config, method, option, bad):
    with pytest.raises(ValueError, match=option):
        tiny_config(method=method, method_options={option: bad})


def test_defaults_are_the_papers(tiny_config):
    snap = Trainer(tiny_config(method="snapmix")).method.augment
    assert isinstance(snap, SnapMix) and snap.alpha == 5.0 and not snap.normalize_weights
    att = Trainer(tiny_config(method="attentive_cutmix")).method.augment
    assert isinstance(att, AttentiveCutMix) and (att.grid, att.top_k) == (7, 6)
    cut = Trainer(tiny_config(method="cutmix")).method
    assert isinstance(cut.augment, CutMix) and cut.option("prob") == 0.5


def test_cutmix_step_is_soft_cross_entropy_of_the_mixed_batch(tiny_config):
    trainer = Trainer(tiny_config(method="cutmix", method_options={"prob": 1.0}))
    method = trainer.method
    images, labels = torch.randn(4, 3, trainer.image_size, trainer.image_size), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(0)
    loss, logits, _ = method.step_loss(images, labels, 0)
    torch.manual_seed(0)
    torch.rand(())  # the per-batch coin
    batch = method.augment(images, labels, trainer.classifier_model)
    expected = -(batch.targets * F.log_softmax(trainer.classifier_model(batch.images), 1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
