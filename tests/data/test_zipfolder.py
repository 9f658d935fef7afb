"""ImageFolderZip on a zip written by the test, and on the shared CIFAR-10 zip when it is present."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from exaug.data import ImageFolderZip, build_dataset

CIFAR_ZIP = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10-jpeg.zip"

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def tiny_zip(tmp_path: Path, make_image) -> Path:
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train/dog/b.png", make_image(GREEN))
        archive.writestr("train/cat/a.png", make_image(RED))
        archive.writestr("train/cat/c.JPG", make_image(RED, fmt="JPEG"))
        archive.writestr("train/cat/notes.txt", b"not an image")
        archive.writestr("train/cat/nested/d.png", make_image(BLUE))  # deeper than <class>/<file>: ignored
        archive.writestr("train/gray/e.png", make_image((128, 0, 0), mode="L"))
        archive.writestr("test/dog/f.png", make_image(BLUE, size=5))
    return path


def test_reads_classes_and_samples(tiny_zip: Path) -> None:
    ds = ImageFolderZip(tiny_zip, "train")
    assert ds.classes == ["cat", "dog", "gray"]
    assert ds.class_to_idx == {"cat": 0, "dog": 1, "gray": 2}
    assert [name for name, _ in ds.samples] == ["train/cat/a.png", "train/cat/c.JPG", "train/dog/b.png",
                                               "train/gray/e.png"]
    assert ds.targets == [0, 0, 1, 2]
    image, target = ds[2]
    assert image.mode == "RGB" and image.size == (8, 8) and image.getpixel((0, 0)) == GREEN and target == 1
    assert ds[3][0].mode == "RGB"  # greyscale files are converted
    test = ImageFolderZip(tiny_zip, "test")
    assert len(test) == 1 and test.classes == ["dog"] and test[0][0].size == (5, 5)


def test_transforms_and_root_layout(tmp_path: Path, make_image) -> None:
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/1.png", make_image(RED))
        archive.writestr("b/2.png", make_image(BLUE))
    ds = ImageFolderZip(path, split=None, transform=lambda im: im.size, target_transform=lambda t: t + 10)
    assert ds[1] == ((8, 8), 11)


def test_missing_inputs_fail_clearly(tiny_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="zip_path"):
        ImageFolderZip(tmp_path / "absent.zip")
    with pytest.raises(FileNotFoundError, match=r"val/.*top-level folders: \['test', 'train'\]"):
        ImageFolderZip(tiny_zip, "val")


def test_handle_is_per_process_and_not_pickled(tiny_zip: Path) -> None:
    ds = ImageFolderZip(tiny_zip, "train")
    ds[0]
    first = ds._archive
    assert first is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._archive is None and clone[0][1] == 0
    ds._pid = -1  # as seen from a forked child: the inherited handle must not be reused
    ds[0]
    assert ds._archive is not first
    ds.close()
    assert ds._archive is None and ds[1][1] == 0


def test_dataloader_workers(tiny_zip: Path) -> None:
    to_tensor = lambda im: torch.tensor(im.getpixel((0, 0)))  # noqa: E731
    ds = ImageFolderZip(tiny_zip, "train", transform=to_tensor)
    ds[0]  # open a handle in the parent before forking
    loader = DataLoader(ds, batch_size=1, num_workers=2)
    pixels = [tuple(p[0].tolist()) for p, _ in loader]
    assert pixels == [tuple(ds[i][0].tolist()) for i in range(len(ds))]


def test_build_dataset_imagefolder_zip(tiny_zip: Path) -> None:
    ds = build_dataset("imagefolder-zip", tiny_zip, "train")
    assert isinstance(ds, ImageFolderZip) and len(ds) == 4


@pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason=f"{CIFAR_ZIP} is absent")
def test_shared_cifar10_zip() -> None:
    train = ImageFolderZip(CIFAR_ZIP, "train")
    test = ImageFolderZip(CIFAR_ZIP, "test")
    assert len(train) == 50000 and len(test) == 10000
    assert train.classes == test.classes and len(train.classes) == 10
    assert torch.tensor(train.targets).bincount().tolist() == [5000] * 10
    image, _ = test[123]
    assert image.size == (32, 32) and image.mode == "RGB"
