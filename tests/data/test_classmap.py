"""One class map per dataset: every split is labelled with the training split's classes (issue #11)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from exaug.data import ImageFolderZip, build_dataset, check_class_maps, dataset_classes
from exaug.data.classmap import validate_classes

from .conftest import image_bytes, write_layout

KINDS = [("imagefolder-zip", True), ("imagefolder", False)]


def _layout(train: dict[str, int], test: dict[str, int]) -> dict[str, bytes]:
    """``{split/class/i.png: bytes}`` with ``count`` images per class; the red channel encodes the class."""
    files = {}
    for split, counts in (("train", train), ("test", test)):
        for cls, count in counts.items():
            for i in range(count):
                files[f"{split}/{cls}/{i}.png"] = image_bytes((ord(cls[0]), 0, 0))
    return files


def _class_of(source: str) -> str:
    return source.replace("\\", "/").split("/")[-2]


@pytest.mark.parametrize("name, as_zip", KINDS)
def test_test_split_missing_a_class_keeps_training_labels(tmp_path: Path, name: str, as_zip: bool) -> None:
    root = write_layout(tmp_path / "data", _layout({"ant": 2, "bee": 2, "cow": 2}, {"ant": 1, "cow": 2}), as_zip)
    train = build_dataset(name, root, "train")
    test = build_dataset(name, root, "test")
    assert test.classes == train.classes == ["ant", "bee", "cow"] and test.class_to_idx == train.class_to_idx
    # Reference: the label of each test image is the training index of the folder it sits in.
    assert test.targets == [train.class_to_idx[_class_of(source)] for source, _ in test.samples] == [0, 2, 2]
    assert test[2][1] == 2 and test[2][0].getpixel((0, 0))[0] == ord("c")


@pytest.mark.parametrize("name, as_zip", KINDS)
def test_class_only_in_test_fails_at_build_time(tmp_path: Path, name: str, as_zip: bool) -> None:
    root = write_layout(tmp_path / "data", _layout({"ant": 1, "bee": 1}, {"ant": 1, "fox": 1, "gnu": 1}), as_zip)
    with pytest.raises(ValueError) as info:
        build_dataset(name, root, "test")
    message = str(info.value)
    assert ("split 'test'" if as_zip else repr(str(root / "test"))) in message  # names the split
    assert "'fox'" in message and "'gnu'" in message and "'ant'" not in message.split("training")[0]
    assert "training split does not have" in message


def test_no_train_split_uses_own_classes_with_a_warning(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", _layout({}, {"cow": 1, "ant": 1}), as_zip=True)
    with pytest.warns(UserWarning, match="no 'train' split"):
        test = build_dataset("imagefolder-zip", root, "test")
    assert test.classes == ["ant", "cow"]


def test_explicit_classes_order_the_labels(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", _layout({"ant": 1, "bee": 1}, {"bee": 1}), as_zip=True)
    test = build_dataset("imagefolder-zip", root, "test", classes=["bee", "ant", "cow"])
    assert test.classes == ["bee", "ant", "cow"] and test.targets == [0]
    train = ImageFolderZip(root, "train", classes=("cow", "bee", "ant"))
    assert train.targets == [2, 1]
    with pytest.raises(ValueError, match=r"'ant'.*training split does not have"):
        ImageFolderZip(root, "train", classes=["bee"])


def test_validate_classes() -> None:
    assert validate_classes(("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="classes must be a sequence"):
        validate_classes("ab")
    with pytest.raises(ValueError, match=r"classes names class\(es\) \['a'\] more than once"):
        validate_classes(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        validate_classes([])
    with pytest.raises(ValueError, match="my_arg"):
        validate_classes(["a", ""], "my_arg")


def test_fixed_class_datasets_check_classes() -> None:
    ds = build_dataset("synthetic", None, "test", num_samples=4, num_classes=3, classes=["circle", "square",
                                                                                           "triangle"])
    assert len(ds) == 4
    with pytest.raises(ValueError, match=r"fixed classes of SyntheticShapes split 'test'"):
        build_dataset("synthetic", None, "test", num_samples=4, num_classes=3, classes=["square", "circle",
                                                                                        "triangle"])


def test_check_class_maps(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", _layout({"ant": 1, "bee": 1, "cow": 1}, {"ant": 1, "cow": 1}), True)
    train = ImageFolderZip(root, "train")
    own = ImageFolderZip(root, "test")  # built on its own: ant=0, cow=1, but the model has cow=2
    with pytest.raises(ValueError, match=r"split 'test'.* gives class 'cow' label 1, the training split label 2"):
        check_class_maps(train, own)
    with pytest.raises(ValueError, match="'cow'"):  # through Subset wrappers, on either side
        check_class_maps(Subset(train, [0]), Subset(Subset(own, [0, 1]), [1]))
    check_class_maps(train, ImageFolderZip(root, "test", classes=train.classes), TensorDataset(torch.zeros(2)))
    extra = write_layout(tmp_path / "other", _layout({"ant": 1}, {"ant": 1, "eel": 1}), True)
    with pytest.raises(ValueError, match=r"split 'test' of .*other.zip.*'eel'"):
        check_class_maps(ImageFolderZip(extra, "train"), ImageFolderZip(extra, "test"))
    assert dataset_classes(Subset(train, [1])) == ["ant", "bee", "cow"]
    assert dataset_classes(TensorDataset(torch.zeros(1))) is None


def test_tinyimagenet_val_with_unknown_classes(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "train" / "n01" / "images").mkdir(parents=True)
    (root / "train" / "n01" / "images" / "a.JPEG").write_bytes(image_bytes((1, 1, 1), fmt="JPEG"))
    (root / "val" / "images" / "v.JPEG").write_bytes(image_bytes((1, 1, 1), fmt="JPEG"))
    (root / "val" / "val_annotations.txt").write_text("v.JPEG\tn01\nw.JPEG\tn07\nx.JPEG\tn09\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped-entry warning for a clean layout
        assert build_dataset("tinyimagenet", root, "train").classes == ["n01"]
    with pytest.raises(ValueError, match=r"split 'val'.*\['n07', 'n09'\].*training classes"):
        build_dataset("tinyimagenet", root, "test")
    (root / "val" / "val_annotations.txt").write_text("v.JPEG\tn01\n")
    val = build_dataset("tinyimagenet", root, "val", classes=["n00", "n01"])
    assert val.classes == ["n00", "n01"] and val.targets == [1]


def test_training_classes_follow_a_rewritten_zip(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", _layout({"ant": 1, "cow": 1}, {"cow": 1}), as_zip=True)
    assert build_dataset("imagefolder-zip", root, "test").targets == [1]
    root.unlink()
    write_layout(tmp_path / "data", _layout({"ant": 1, "bee": 1, "cow": 1}, {"cow": 1}), as_zip=True)
    assert build_dataset("imagefolder-zip", root, "test").targets == [2]  # not a stale cached class list


@pytest.mark.parametrize("name, as_zip", KINDS)
def test_missing_data_is_still_a_clear_error(tmp_path: Path, name: str, as_zip: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError, match="zip_path" if as_zip else "not a directory"):
            build_dataset(name, tmp_path / ("absent.zip" if as_zip else "absent"), "test")
