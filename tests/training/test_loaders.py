"""``build_eval_dataset``: held-out evaluation images never overlap the images a run validated on."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from exaug.data import SyntheticShapes
from exaug.training import TrainConfig
from exaug.training.loaders import build_eval_dataset, validation_on_test_subset


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # lossless: every image stays distinct
    return buffer.getvalue()


@pytest.fixture
def zip_with_test_images(tmp_path: Path) -> Path:
    """3 classes, 4 train and 10 test 8x8 images each, every image distinct."""
    rng = np.random.default_rng(0)
    path = tmp_path / "small.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("train", 4), ("test", 10)):
            for name in ("a", "b", "c"):
                for i in range(count):
                    archive.writestr(f"{split}/{name}/{i:02d}.png", png(rng.integers(0, 256, (8, 8, 3), np.uint8)))
    return path


def images_of(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_held_out_zip_images_are_disjoint_from_validation(zip_with_test_images):
    config = TrainConfig(dataset="imagefolder-zip", data_root=str(zip_with_test_images), image_size=8,
                         eval_samples=12)
    assert validation_on_test_subset(config)
    validation = images_of(build_eval_dataset(config, "test", 12))  # the trainer's validation draw
    held_out = images_of(build_eval_dataset(config, "test", held_out=True))
    assert held_out.shape[0] == 30 - 12
    distance = torch.cdist(held_out.flatten(1), validation.flatten(1))
    assert distance.min() > 0  # no validation image among the held-out ones
    everything = images_of(build_eval_dataset(config, "test"))
    assert everything.shape[0] == 30
    # A class-balanced subset of the held-out pool, still disjoint.
    some = build_eval_dataset(config, "test", 9, held_out=True)
    labels = torch.tensor([int(some[i][1]) for i in range(len(some))])
    assert len(some) == 9 and labels.bincount().tolist() == [3, 3, 3]
    assert torch.cdist(images_of(some).flatten(1), validation.flatten(1)).min() > 0


def test_held_out_synthetic_images_follow_the_validation_ones():
    config = TrainConfig(dataset="synthetic", eval_samples=8, seed=0)
    held_out = build_eval_dataset(config, "test", 4, held_out=True)
    reference = SyntheticShapes("test", 12)
    assert len(held_out) == 4
    for i in range(4):
        assert torch.equal(held_out[i][0], build_eval_dataset(config, "test", 12)[8 + i][0])
        assert int(held_out[i][1]) == int(reference[8 + i][1])
    validation = images_of(build_eval_dataset(config, "test", 8))
    assert torch.cdist(images_of(held_out).flatten(1), validation.flatten(1)).min() > 0


def test_nothing_to_hold_out():
    whole = TrainConfig(dataset="synthetic", eval_samples=None)
    assert not validation_on_test_subset(whole)
    with pytest.raises(ValueError, match="whole test split"):
        build_eval_dataset(whole, "test", 4, held_out=True)
    # Validation on a split of the training set: the test split is held out as a whole already.
    train_split = TrainConfig(dataset="synthetic", val_fraction=0.2, eval_samples=8)
    assert not validation_on_test_subset(train_split)
    assert len(build_eval_dataset(train_split, "test", 4, held_out=True)) == 4


@pytest.mark.parametrize("on_device", [False, True])
def test_view_options_reach_both_view_paths(on_device: bool) -> None:
    # view_crop_min=1 and no colour ops: every random view of a training image is its standard view or the mirror
    # of it, on the per-image (DataLoader) path and on the batched Kornia path alike.
    from exaug.training.distributed import DistContext
    from exaug.training.loaders import build_run_data

    config = TrainConfig(method="supcon", train_samples=16, eval_samples=8, batch_size=8, views_on_device=on_device,
                         view_crop_min=1.0, view_colour=False, device="cpu")
    data = build_run_data(config, DistContext(0, 1, torch.device("cpu")))
    standard, view1, view2, _, _ = next(data.contrastive_batches(torch.device("cpu"), torch.contiguous_format))
    for view in (view1, view2):
        same = (view - standard).abs().amax(dim=(1, 2, 3)) < 1e-4
        mirrored = (view - standard.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
        assert bool((same | mirrored).all())
    config = TrainConfig(method="supcon", train_samples=16, eval_samples=8, batch_size=8, views_on_device=on_device,
                         device="cpu")
    standard, view1, _, _, _ = next(build_run_data(config, DistContext(0, 1, torch.device("cpu")))
                                    .contrastive_batches(torch.device("cpu"), torch.contiguous_format))
    assert not bool(((view1 - standard).abs().amax(dim=(1, 2, 3)) < 1e-4).all())  # the defaults do change them


def test_view_crop_min_is_checked() -> None:
    for bad in (0.0, 1.5, "big"):
        with pytest.raises(ValueError, match="view_crop_min"):
            TrainConfig(view_crop_min=bad)
