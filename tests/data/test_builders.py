"""build_dataset, Tiny ImageNet layout, image folders, normalisation constants, splits and subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.data import Subset, TensorDataset

from exaug.data import (
    DATASET_STATS, SyntheticShapes, TinyImageNet, build_dataset, dataset_stats, dataset_targets, list_datasets,
    split_train_val, subset,
)

WNIDS = ["n02", "n01"]  # deliberately unsorted in wnids.txt


@pytest.fixture
def tiny_imagenet(tmp_path: Path, make_image) -> Path:
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby cat\nn99\tunused\n")
    for k, wnid in enumerate(WNIDS):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        for j in range(3):
            (images / f"{wnid}_{j}.JPEG").write_bytes(make_image((40 * k, 0, 0), size=64, fmt="JPEG"))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t1\t2\t10\t20\n")
    rows = [("val_0.JPEG", "n02", 0, 0, 63, 63), ("val_1.JPEG", "n01", 5, 6, 7, 8), ("val_2.JPEG", "n01", 0, 1, 2, 3)]
    for name, *_ in rows:
        (root / "val" / "images" / name).write_bytes(make_image((0, 0, 200), size=64, fmt="JPEG", mode="L"))
    (root / "val" / "val_annotations.txt").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return root


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match=r"Did you mean 'cifar10'\?.*synthetic, tinyimagenet"):
        build_dataset("cifar-10", "/tmp", "train")
    assert "imagefolder-zip" in list_datasets()


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_says_where_and_how(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build_dataset(name, tmp_path, "train", download=False)
    message = str(info.value)
    assert str(tmp_path / folder) in message
    assert "--download" in message and "--data-root" in message
    with pytest.raises(ValueError, match="split"):
        build_dataset(name, tmp_path, "val")


def test_synthetic_through_factory() -> None:
    ds = build_dataset("synthetic", None, "test", transform=lambda x: x.shape, num_samples=12, image_size=16)
    assert isinstance(ds, SyntheticShapes) and len(ds) == 12 and ds[0] == (torch.Size([3, 16, 16]), 0)
    with pytest.raises(TypeError, match="num_samples"):
        build_dataset("cifar10", "/nonexistent", "train", num_samples=10)


def test_tinyimagenet_layout(tiny_imagenet: Path) -> None:
    train = build_dataset("tinyimagenet", tiny_imagenet.parent, "train")  # the parent folder works too
    assert isinstance(train, TinyImageNet)
    assert train.classes == ["n01", "n02"] and train.class_names == ["goldfish, Carassius auratus", "tabby cat"]
    assert len(train) == 6 and train.targets == [0, 0, 0, 1, 1, 1]
    assert train.box(0).tolist() == [1, 2, 10, 20] and train.box(1).tolist() == [-1, -1, -1, -1]
    assert not train.mask(1).any()
    image, target = train[4]
    assert image.size == (64, 64) and image.mode == "RGB" and target == 1

    val = TinyImageNet(tiny_imagenet, "val", transform=lambda im: im.mode)
    assert [name.rsplit("/", 1)[1] for name, _ in val.samples] == ["val_0.JPEG", "val_1.JPEG", "val_2.JPEG"]
    assert val.targets == [1, 0, 0] and val.boxes.shape == (3, 4)
    assert val[0] == ("RGB", 1)  # greyscale originals are converted
    mask = val.mask(1)
    assert mask.shape == (1, 64, 64) and mask.sum() == 3 * 3 and mask[0, 6:9, 5:8].all()
    assert build_dataset("tinyimagenet", tiny_imagenet, "test").samples == val.samples  # test = val


def test_tinyimagenet_errors(tmp_path: Path, tiny_imagenet: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tiny-imagenet-200"):
        TinyImageNet(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        TinyImageNet(tiny_imagenet, "validation")
    (tiny_imagenet / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        TinyImageNet(tiny_imagenet, "val")


def test_imagefolder(tmp_path: Path, make_image) -> None:
    for cls in ("b", "a"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "x.png").write_bytes(make_image((1, 2, 3)))
    ds = build_dataset("imagefolder", tmp_path, "train")
    assert isinstance(ds, torchvision.datasets.ImageFolder) and ds.classes == ["a", "b"]
    assert len(build_dataset("imagefolder", tmp_path / "train", None)) == 2
    with pytest.raises(FileNotFoundError, match="test"):
        build_dataset("imagefolder", tmp_path, "test")


def test_normalisation_constants() -> None:
    assert dataset_stats("cifar100") == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
    assert dataset_stats("tinyimagenet") == dataset_stats("imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert set(list_datasets()) <= set(DATASET_STATS)
    with pytest.raises(ValueError, match="Did you mean 'cifar100'"):
        dataset_stats("cifar1000")


def test_split_train_val_stratified_and_seeded() -> None:
    ds = SyntheticShapes("train", 1003)
    train, val = split_train_val(ds, val_fraction=0.2, seed=0)
    assert len(val) == 201 and len(train) == 802
    assert set(train.indices).isdisjoint(val.indices) and len(set(train.indices) | set(val.indices)) == 1003
    counts = dataset_targets(val).bincount()
    assert counts.max() - counts.min() <= 1  # stratified: every class gives 20 or 21
    again = split_train_val(ds, val_fraction=0.2, seed=0)[1]
    assert again.indices == val.indices
    assert split_train_val(ds, val_fraction=0.2, seed=1)[1].indices != val.indices
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(ds, val_fraction=1.0)


def test_split_uses_val_dataset_transform() -> None:
    augmented = SyntheticShapes("train", 50, transform=lambda x: "augmented")
    plain = SyntheticShapes("train", 50, transform=lambda x: "plain")
    train, val = split_train_val(augmented, 0.2, val_dataset=plain)
    assert train[0][0] == "augmented" and val[0][0] == "plain"
    with pytest.raises(ValueError, match="val_dataset"):
        split_train_val(augmented, 0.2, val_dataset=SyntheticShapes("train", 10))


def test_split_without_targets_is_random() -> None:
    ds = TensorDataset(torch.arange(100))
    assert dataset_targets(ds) is None
    train, val = split_train_val(ds, 0.25, seed=3)
    assert len(val) == 25 and sorted(train.indices + val.indices) == list(range(100))


def test_subset_balanced_and_seeded() -> None:
    ds = SyntheticShapes("train", 1000)
    part = subset(ds, 100, seed=5)
    assert isinstance(part, Subset) and len(part) == 100
    assert dataset_targets(part).bincount().tolist() == [10] * 10
    assert subset(ds, 100, seed=5).indices == part.indices
    assert subset(ds, 100, seed=6).indices != part.indices
    nested = subset(part, 20, seed=0)  # targets are found through Subset wrappers
    assert dataset_targets(nested).bincount().tolist() == [2] * 10
    assert len(subset(ds, 7, seed=0, stratified=False)) == 7
    with pytest.raises(ValueError, match="n must be"):
        subset(ds, 1001)
