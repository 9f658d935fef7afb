"""SyntheticShapes' flipped test cue and the cue patch as the ground-truth region (``test_cue``, ``mask_of``)."""

from __future__ import annotations

import pytest
import torch

from exaug.data import SyntheticShapes, build_dataset
from exaug.data.synthetic import cue_region


def test_flipped_cue_never_agrees_and_changes_only_the_patch() -> None:
    random = SyntheticShapes("test", 1200, spurious=True)
    flipped = SyntheticShapes("test", 1200, spurious=True, test_cue="flipped")
    assert (flipped.cues != flipped.targets).all() and (flipped.cues >= 0).all()
    assert (random.cues == random.targets).any()  # the random cue does agree sometimes (1 in 10)
    # Uniform over the 9 other classes: every (label, cue) pair with cue != label occurs (1200 / 90 ~ 13 each).
    pairs = torch.zeros(10, 10, dtype=torch.long)
    pairs.index_put_((flipped.targets, flipped.cues), torch.ones(1200, dtype=torch.long), accumulate=True)
    assert pairs.diagonal().sum() == 0 and (pairs + torch.eye(10, dtype=torch.long) * 99).min() > 2
    # Same shapes, backgrounds and noise: the pixels differ only inside the cue patch, and exactly where the cue
    # classes differ, where the patch has the colour of the cue class.
    corner = cue_region(32)
    images_r, images_f = random._images, flipped._images
    assert torch.equal(images_r[:, :, ~corner], images_f[:, :, ~corner])
    assert torch.equal(random._masks, flipped._masks)
    same = random.cues == flipped.cues
    assert torch.equal(images_r[same], images_f[same])
    # Each cue class has one patch colour, the one the random cue uses for it.
    for c in range(10):
        colours = torch.cat([images_r[random.cues == c, :, 0, 0], images_f[flipped.cues == c, :, 0, 0]])
        assert (colours == colours[0]).all()


def test_flipped_cue_is_deterministic_per_index_and_lazy_equals_cached() -> None:
    big = SyntheticShapes("test", 300, spurious=True, test_cue="flipped", seed=5)
    small = SyntheticShapes("test", 40, spurious=True, test_cue="flipped", seed=5, cache=False)
    assert torch.equal(small.cues, big.cues[:40])
    for i in (0, 17, 39):
        assert torch.equal(small.image(i), big.image(i))
    # The train split ignores test_cue: one options dict can describe both splits of a run.
    train = SyntheticShapes("train", 50, spurious=True)
    assert torch.equal(SyntheticShapes("train", 50, spurious=True, test_cue="flipped").cues, train.cues)


def test_cue_mask_is_the_patch() -> None:
    ds = SyntheticShapes("test", 6, spurious=True, mask_of="cue", image_size=24, return_mask=True)
    patch = torch.zeros(1, 24, 24, dtype=torch.bool)
    patch[:, :3, :3] = True  # max(2, 24 // 8)
    for i in range(len(ds)):
        assert torch.equal(ds.mask(i), patch) and torch.equal(ds[i][2], patch)
        # The patch is uniform (one colour): the cue and nothing else.
        assert ds.image(i)[:, :3, :3].flatten(1).std(1).max() < 1e-6
    objects = SyntheticShapes("test", 6, spurious=True, image_size=24)
    assert not any((objects.mask(i) & patch).any() for i in range(6))
    assert "mask_of='cue'" in repr(ds)


def test_options_reach_the_dataset_through_build_dataset() -> None:
    ds = build_dataset("synthetic", None, "test", num_samples=20, spurious=True, test_cue="flipped")
    assert (ds.cues != ds.targets).all() and "test_cue='flipped'" in repr(ds)


def test_invalid_cue_options_name_the_argument() -> None:
    with pytest.raises(ValueError, match="test_cue must be one of random, flipped"):
        SyntheticShapes("test", 4, spurious=True, test_cue="inverted")
    with pytest.raises(ValueError, match="mask_of must be one of object, cue"):
        SyntheticShapes("test", 4, spurious=True, mask_of="box")
    with pytest.raises(ValueError, match="mask_of='cue' needs spurious=True"):
        SyntheticShapes("test", 4, mask_of="cue")


def test_run_config_dataset_options_reach_every_split() -> None:
    from exaug.training import TrainConfig
    from exaug.training.loaders import build_eval_dataset

    config = TrainConfig(method="ce", dataset_options={"spurious": True, "test_cue": "flipped"}, image_size=16)
    test = build_eval_dataset(config, "test", samples=30)
    assert (test.cues != test.targets).all() and test.image_size == 16 and len(test) == 30
    train = build_eval_dataset(config, "train", samples=30)
    assert train.spurious and (train.cues == train.targets).any()
    assert TrainConfig.from_dict(config.to_dict()).dataset_options == config.dataset_options
    with pytest.raises(ValueError, match="dataset_options are for the synthetic dataset only"):
        TrainConfig(dataset="cifar10", dataset_options={"spurious": True})
    with pytest.raises(ValueError, match=r"dataset_options cannot set \['image_size'\]"):
        TrainConfig(dataset_options={"image_size": 8})
    with pytest.raises(ValueError, match="dataset_options must be a mapping"):
        TrainConfig(dataset_options=[("spurious", True)])  # type: ignore[arg-type]
