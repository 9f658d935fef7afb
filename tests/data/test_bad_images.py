"""Unreadable images: a clear BadImageError naming the file, or a counted replacement; check_images finds them."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from exaug.data import (
    BadImageError,
    BadImageWarning,
    ImageFolderZip,
    SyntheticShapes,
    TinyImageNet,
    build_dataset,
    check_images,
)

from .conftest import BAD_KINDS, bad_image_bytes, image_bytes, write_layout

CONTAINERS = [("imagefolder-zip", True), ("imagefolder", False)]


def _pil_reads(data: bytes) -> bool:
    """Independent reference: can PIL open and fully decode ``data``?"""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB")
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_kinds_are_unreadable(kind: str) -> None:
    assert not _pil_reads(bad_image_bytes(kind)) and _pil_reads(image_bytes((1, 2, 3)))


def _dataset(tmp_path: Path, name: str, as_zip: bool, bad: dict[int, str], **kwargs):
    """Six images ``train/c<k>/<i>.png`` (class k = i // 2, red channel = 40 * i); those in ``bad`` unreadable."""
    files = {}
    for i in range(6):
        ext = "jpg" if i in bad and bad[i] in ("truncated", "text") else "png"
        files[f"train/c{i // 2}/{i}.{ext}"] = bad_image_bytes(bad[i]) if i in bad else image_bytes((40 * i, 0, 0))
    root = write_layout(tmp_path / "data", files, as_zip)
    return build_dataset(name, root, "train", transform=lambda im: im.getpixel((0, 0))[0] // 40, **kwargs), files


@pytest.mark.parametrize("name, as_zip", CONTAINERS)
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_image_raises_naming_file_and_dataset(tmp_path: Path, name: str, as_zip: bool, kind: str) -> None:
    ds, _ = _dataset(tmp_path, name, as_zip, {3: kind})
    assert ds[2] == (2, 1)
    with pytest.raises(BadImageError) as info:
        ds[3]
    message, source = str(info.value), ds.image_source(3)
    if as_zip:
        assert source == f"{ds.zip_path}:train/c1/3.{'jpg' if kind in ('truncated', 'text') else 'png'}"
        assert "split 'train'" in message
    else:
        assert source == str(tmp_path / "data" / "train" / "c1" / Path(source).name)
    assert repr(source) in message and "sample 3" in message and "skip_bad_images" in message
    assert isinstance(info.value, ValueError) and info.value.source == source
    assert ds.bad_images == set()


@pytest.mark.parametrize("name, as_zip", CONTAINERS)
def test_skip_bad_images_uses_next_readable(tmp_path: Path, name: str, as_zip: bool) -> None:
    bad = {1: "corrupt", 2: "zero-byte", 5: "text"}
    ds, _ = _dataset(tmp_path, name, as_zip, bad, skip_bad_images=True)
    with pytest.warns(BadImageWarning) as record:
        items = [ds[i] for i in range(6)]
    # Image and label come from the same replacement sample: 1 and 2 -> 3; 5 wraps around to 0.
    assert items == [(0, 0), (3, 1), (3, 1), (3, 1), (4, 2), (0, 0)]
    assert ds.bad_images == {1, 2, 5}
    assert sorted(str(w.message).split("'")[1] for w in record) == sorted(ds.image_source(i) for i in bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad images are skipped silently afterwards
        assert ds[1] == (3, 1) and ds[-1] == (0, 0)
    with pytest.raises(IndexError):
        ds[6]


def test_all_bad_images(tmp_path: Path) -> None:
    ds, _ = _dataset(tmp_path, "imagefolder-zip", True, {i: "text" for i in range(6)}, skip_bad_images=True)
    with pytest.warns(BadImageWarning), pytest.raises(BadImageError, match="no readable image .* all 6 are bad"):
        ds[0]


@pytest.mark.parametrize("name, as_zip", CONTAINERS)
def test_error_survives_dataloader_workers(tmp_path: Path, name: str, as_zip: bool) -> None:
    ds, _ = _dataset(tmp_path, name, as_zip, {4: "truncated"})
    with pytest.raises(BadImageError, match="train/c2/4.jpg"):
        list(DataLoader(ds, batch_size=2, num_workers=1))
    ds.skip_bad_images = True
    labels = torch.cat([y for _, y in DataLoader(ds, batch_size=3, num_workers=2)])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]  # 4 -> 5, same class here
    images = torch.cat([x for x, _ in DataLoader(ds, batch_size=3, num_workers=2)])
    assert images.tolist() == [0, 1, 2, 3, 5, 5]
    assert ds.bad_images == set()  # recorded in the workers only (documented: per process)


@pytest.mark.parametrize("name, as_zip", CONTAINERS)
def test_check_images_reports_every_bad_file(tmp_path: Path, name: str, as_zip: bool) -> None:
    bad = {0: "truncated", 2: "corrupt", 3: "zero-byte", 5: "text"}
    ds, files = _dataset(tmp_path, name, as_zip, bad)
    # Reference: which of the written files PIL cannot decode.
    unreadable = sorted(i for i, data in enumerate(files.values()) if not _pil_reads(data))
    assert unreadable == sorted(bad)
    for workers in (0, 2):
        report = check_images(ds, batch_size=2, num_workers=workers, progress=workers == 0)
        assert report.checked == 6 and not report.ok
        assert [b.index for b in report.bad] == unreadable
        assert [b.source for b in report.bad] == [ds.image_source(i) for i in unreadable]
    text = str(report)
    assert "6 images checked, 4 unreadable" in text and ds.image_source(5) in text
    with pytest.raises(BadImageError, match="train/c1/2.png"):
        report.raise_if_bad()
    quick = check_images(ds, range(2, 2 + 1))  # e.g. the first batch only
    assert quick.checked == 1 and [b.index for b in quick.bad] == [2]
    part = check_images(Subset(ds, [1, 5, 4]))  # indices are positions in the subset
    assert [(b.index, b.source) for b in part.bad] == [(1, ds.image_source(5))]
    clean, _ = _dataset(tmp_path / "clean", name, as_zip, {})
    assert check_images(clean).ok


def test_check_images_stricter_than_decode(tmp_path: Path) -> None:
    """A PNG with only a checksum error decodes; the check still reports it."""
    data = bytearray(image_bytes((5, 5, 5), size=4))
    crc = data.find(b"IEND") - 8  # the IDAT chunk's CRC, before IEND's 4-byte length
    data[crc] ^= 0xFF
    assert _pil_reads(bytes(data))
    root = write_layout(tmp_path / "d", {"train/a/x.png": bytes(data)}, as_zip=True)
    report = check_images(ImageFolderZip(root, "train"))
    assert [b.index for b in report.bad] == [0] and "checksum" in report.bad[0].reason


def test_check_images_on_datasets_without_files() -> None:
    report = check_images(SyntheticShapes("test", 4))
    assert report.ok and not report.reads_files and report.checked == 0
    assert "nothing to check" in str(report)
    with pytest.raises(ValueError, match="batch_size"):
        check_images(SyntheticShapes("test", 4), batch_size=0)


def test_tinyimagenet_bad_image(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    images = root / "train" / "n01" / "images"
    images.mkdir(parents=True)
    (root / "val").mkdir()
    (images / "a.JPEG").write_bytes(bad_image_bytes("truncated"))
    (images / "b.JPEG").write_bytes(image_bytes((7, 7, 7), fmt="JPEG"))
    ds = TinyImageNet(root, "train")
    with pytest.raises(BadImageError, match=r"a\.JPEG.*TinyImageNet split 'train'"):
        ds[0]
    assert [b.source for b in check_images(ds).bad] == [str(images / "a.JPEG")]
    skipping = TinyImageNet(root, "train", skip_bad_images=True)
    with pytest.warns(BadImageWarning):
        assert skipping[0][0].size == (8, 8) and skipping.bad_images == {0}
