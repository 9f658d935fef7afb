"""Hidden and traversal names never become classes or samples; one warning counts them (issue #11)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import pytest

from exaug.data import ImageFolder, ImageFolderZip, SkippedEntriesWarning, TinyImageNet, build_dataset
from exaug.data.names import entry_problem

from .conftest import image_bytes, write_layout

RED, GREEN = (255, 0, 0), (0, 255, 0)


@pytest.mark.parametrize(
    "name, problem",
    [("train/cat/a.jpg", None), ("a..b/c.png", None), ("../x.jpg", "unsafe"), ("./x.jpg", "unsafe"),
     ("train/../x.jpg", "unsafe"), ("/etc/x.jpg", "unsafe"), ("C:/x.jpg", "unsafe"), ("cat\\..\\x.jpg", "unsafe"),
     ("__MACOSX/train/cat/._a.jpg", "hidden"), ("train/cat/.DS_Store", "hidden"), ("train/cat/._a.jpg", "hidden"),
     (".hidden/a.png", "hidden"), ("train/cat/", None)],
)
def test_entry_problem(name: str, problem: str | None) -> None:
    assert entry_problem(name) == problem


def _one_warning(record: list[warnings.WarningMessage]) -> str:
    skipped = [w for w in record if issubclass(w.category, SkippedEntriesWarning)]
    assert len(skipped) == 1, [str(w.message) for w in record]
    return str(skipped[0].message)


@pytest.mark.parametrize("split", [None, "train"])
def test_crafted_zip(tmp_path: Path, split: str | None) -> None:
    prefix = f"{split}/" if split else ""
    good = {f"{prefix}cat/a.png": image_bytes(RED), f"{prefix}dog/b.png": image_bytes(GREEN)}
    bad = [f"{prefix}../x.png", f"{prefix}./y.png", f"{prefix}../../z.png", "/abs/cat/c.png",
           f"__MACOSX/{prefix}cat/._a.png", f"{prefix}cat/._a.png", f"{prefix}.DS_Store",
           f"{prefix}.hidden/d.png", f"{prefix}cat/.e.png"]
    path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in good.items():
            archive.writestr(member, data)
        for member in bad:
            archive.writestr(member, b"\x00\x05\x16\x07 AppleDouble, not an image")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = ImageFolderZip(path, split)
    message = _one_warning(record)
    assert f"skipped {len(bad)} hidden or unsafe entries (5 hidden, 4 unsafe)" in message
    assert repr(bad[0]) in message and "crafted.zip" in message
    assert ds.classes == ["cat", "dog"] and [m for m, _ in ds.samples] == sorted(good)
    assert [ds[i][1] for i in range(len(ds))] == [0, 1]  # every kept member decodes


def test_clean_zip_warns_nothing(tmp_path: Path) -> None:
    path = write_layout(tmp_path / "clean", {"train/cat/a.png": image_bytes(RED)}, as_zip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ImageFolderZip(path, "train")) == 1


def test_only_hidden_members_is_no_dataset(tmp_path: Path) -> None:
    path = write_layout(tmp_path / "mac", {"__MACOSX/train/cat/._a.png": b"x", "train/cat/._a.png": b"x"}, True)
    with pytest.warns(SkippedEntriesWarning, match="skipped 2"), pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderZip(path, "train")


def test_folder_hidden_entries(tmp_path: Path) -> None:
    files = {"train/cat/a.png": image_bytes(RED), "train/dog/b.png": image_bytes(GREEN),
             "train/.DS_Store": b"mac", "train/cat/._a.png": b"\x00\x05\x16\x07", "train/.ipynb_checkpoints/c.png":
             image_bytes(RED), "train/__MACOSX/cat/._a.png": b"x", "train/dog/.cache/d.png": image_bytes(GREEN),
             "test/cat/e.png": image_bytes(RED), "test/.hidden/f.png": image_bytes(RED)}
    root = write_layout(tmp_path / "data", files, as_zip=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        train = build_dataset("imagefolder", root, "train")
    message = _one_warning(record)
    assert "skipped 5 hidden or unsafe entries (5 hidden, 0 unsafe)" in message and "'.DS_Store'" in message
    assert isinstance(train, ImageFolder) and train.classes == ["cat", "dog"]
    assert [Path(p).name for p, _ in train.samples] == ["a.png", "b.png"]
    assert [train[i][1] for i in range(2)] == [0, 1]
    with pytest.warns(SkippedEntriesWarning, match="skipped 1 hidden or unsafe entry "):
        test = build_dataset("imagefolder", root, "test")  # the training classes come with no warning
    assert test.classes == ["cat", "dog"] and test.targets == [0]


def test_tinyimagenet_hidden_files(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    images = root / "train" / "n01" / "images"
    images.mkdir(parents=True)
    (root / "val" / "images").mkdir(parents=True)
    (images / "a.JPEG").write_bytes(image_bytes(RED, fmt="JPEG"))
    (images / "._a.JPEG").write_bytes(b"\x00\x05\x16\x07")
    (root / "train" / ".DS_Store").write_bytes(b"mac")  # not a class either
    (root / "val" / "images" / "v.JPEG").write_bytes(image_bytes(RED, fmt="JPEG"))
    (root / "val" / "val_annotations.txt").write_text("v.JPEG\tn01\n../../v.JPEG\tn01\n")
    with pytest.warns(SkippedEntriesWarning, match=r"skipped 1 .*'train/n01/images/\._a\.JPEG'"):
        train = TinyImageNet(root, "train")
    assert train.classes == ["n01"] and len(train) == 1
    with pytest.warns(SkippedEntriesWarning, match=r"skipped 1 .*\(0 hidden, 1 unsafe\)"):
        assert len(TinyImageNet(root, "val")) == 1
