"""Datasets and loaders of a training run, and the batches they put on the device.

Three loaders share one training split:

* ``contrastive``: per image ``[standard(x), random(x), random(x)]`` (the ExCon 3-view transform), or only the
  resized pixels when ``views_on_device`` is set, in which case the two random views are drawn on the device
  with Kornia (per-sample parameters) and the standard view is a normalisation; with the label and the image's
  index in the training split (``0 .. train_size - 1``), which keys the saliency cache;
* ``single``: one random view per image (linear-classifier epochs and cross-entropy training);
* ``val``: the standard view of the validation split.

Every loader is reseeded per epoch (:meth:`RunData.set_epoch`), so data order and augmentations depend only on
``(seed, epoch)``: a resumed run sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2

from ..data import (ImageCheckReport, IndexedDataset, build_dataset, check_class_maps, check_images, dataset_stats,
                    split_train_val, subset)
from ..transforms import DeviceViewAugment, ExConTransform, standard_view, supcon_random_view
from .config import TrainConfig
from .distributed import DistContext

__all__ = ["RunData", "build_eval_dataset", "build_run_data", "check_run_images", "pixels_view", "run_image_size",
           "validation_on_test_subset"]


@dataclasses.dataclass
class RunData:
    """Loaders of one run plus what the model needs to know about the data."""

    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    val_size: int
    contrastive: DataLoader
    single: DataLoader
    val: DataLoader
    device_views: DeviceViewAugment | None = None

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Make this epoch's order and augmentations a function of ``(seed, epoch)`` only."""
        for loader in (self.contrastive, self.single):
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(epoch)
            loader.generator.manual_seed(seed)  # type: ignore[union-attr]

    def contrastive_batches(
        self, device: torch.device, memory_format: torch.memory_format
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """``(standard, view1, view2, labels, indices)`` on ``device``: each image tensor ``(B, C, H, W)``, labels
        and indices ``(B,)`` int64, the indices being positions in the training split (``0 .. train_size - 1``)."""
        for views, labels, indices in self.contrastive:
            labels = labels.to(device, non_blocking=True)
            indices = indices.to(device, non_blocking=True)
            if self.device_views is not None:
                pixels = _to(views, device, memory_format)
                standard = v2.functional.normalize(pixels, list(self.mean), list(self.std))
                yield standard, self.device_views(pixels), self.device_views(pixels), labels, indices
            else:
                standard, view1, view2 = (_to(v, device, memory_format) for v in views)
                yield standard, view1, view2, labels, indices

    def single_batches(self, device: torch.device, memory_format: torch.memory_format) -> Iterator[tuple[Tensor, Tensor]]:
        """``(random view, labels)`` on ``device``."""
        for images, labels in self.single:
            images = _to(images, device, memory_format)
            if self.device_views is not None:
                images = self.device_views(images)
            yield images, labels.to(device, non_blocking=True)

    def val_batches(self, device: torch.device, memory_format: torch.memory_format) -> Iterator[tuple[Tensor, Tensor]]:
        """``(standard view, labels)`` of the validation split on ``device``."""
        for images, labels in self.val:
            yield _to(images, device, memory_format), labels.to(device, non_blocking=True)


def _to(images: Tensor, device: torch.device, memory_format: torch.memory_format) -> Tensor:
    return images.to(device, non_blocking=True).contiguous(memory_format=memory_format)


NATIVE_SIZES = {"synthetic": 32, "cifar10": 32, "cifar100": 32, "tinyimagenet": 64}


def pixels_view(size: int) -> v2.Compose:
    """Resized pixels in ``[0, 1]`` (no augmentation, no normalisation): what the loader yields when the random
    views are generated on the device."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Resize((size, size), antialias=True)])


def _with_transform(dataset: Dataset, transform: Any) -> Dataset:
    """A shallow copy of ``dataset`` with another per-sample transform: the images are loaded (or rendered) once
    and shared by the views of the run."""
    clone = copy.copy(dataset)
    clone.transform = transform  # type: ignore[attr-defined]
    return clone


def _load(config: TrainConfig, split: str, size: int, samples: int | None) -> Dataset:
    """The raw split (no transform); for ``synthetic`` only the ``samples`` images that are used are rendered."""
    options: dict[str, Any] = {}
    if config.dataset == "synthetic":
        options = {**config.dataset_options, "image_size": size, "num_samples": samples}
    return build_dataset(config.dataset, config.data_root, split, None, download=config.download,
                         skip_bad_images=config.skip_bad_images, **options)


def check_run_images(config: TrainConfig, *, progress: bool = False) -> list[ImageCheckReport]:
    """Decode every image of the run's train and test splits (``exaug train --check-data``).

    Returns:
        One :class:`~exaug.data.ImageCheckReport` per split (``report.ok`` when every image is readable;
        in-memory datasets such as synthetic and CIFAR have nothing to check).
    """
    # Only synthetic data uses the size (and renders, so has nothing to check): never decode an image for it here.
    size = config.image_size or NATIVE_SIZES.get(config.dataset, 32)
    return [check_images(_load(config, split, size, None), num_workers=config.workers, progress=progress)
            for split in ("train", "test")]


_NOTHING_HELD_OUT = ("the run validated on the whole test split, so no test image is held out; evaluate with "
                     "held_out=False (scores of the best checkpoint are then optimistic)")


def build_eval_dataset(
    config: TrainConfig, split: str = "test", samples: int | None = None, held_out: bool = False
) -> Dataset:
    """Standard-view (resize + normalise) images of ``split`` as validation sees them, e.g. to evaluate a run.

    Args:
        config: the run's configuration (dataset, root, image size, seed).
        split: ``"train"`` or ``"test"``.
        samples: a seeded, class-balanced subset of this many images (``None``: all).
        held_out: leave out the test images the run validated on (its ``eval_samples`` subset), so that a
            checkpoint chosen on validation accuracy is not scored on the images it was chosen on. Only the
            test split of runs validated on a test subset has anything to leave out: see
            :func:`validation_on_test_subset`.

    Raises:
        ValueError: ``held_out`` is asked for but the run validated on the whole test split.
    """
    mean, std = dataset_stats(config.dataset)
    size = run_image_size(config)
    exclude = held_out and split == "test" and config.val_fraction == 0
    if exclude and config.eval_samples is None:
        raise ValueError(_NOTHING_HELD_OUT)
    if config.dataset == "synthetic":
        # Image i depends only on (seed, split, i): validation rendered images 0 .. eval_samples - 1, so the
        # held-out images are the ones after them.
        start = config.eval_samples if exclude else 0
        count = None if samples is None else start + samples
        raw = _load(config, split, size, count)
        dataset = _with_transform(raw, standard_view(size, mean, std))
        if start:
            dataset = Subset(dataset, list(range(start, len(dataset))))  # type: ignore[arg-type]
        return dataset
    dataset = _with_transform(_load(config, split, size, None), standard_view(size, mean, std))
    if exclude and len(dataset) > config.eval_samples:  # type: ignore[arg-type, operator]
        # The same draw as build_run_data's validation subset; what remains is held out.
        validation = set(subset(dataset, config.eval_samples, seed=config.seed + 1).indices)  # type: ignore[arg-type]
        dataset = Subset(dataset, [i for i in range(len(dataset)) if i not in validation])  # type: ignore[arg-type]
    elif exclude:
        raise ValueError(_NOTHING_HELD_OUT)
    if samples is not None and len(dataset) > samples:  # type: ignore[arg-type]
        dataset = subset(dataset, samples, seed=config.seed + 1)
    return dataset


def validation_on_test_subset(config: TrainConfig) -> bool:
    """Whether the run validated on a strict subset of its test split, leaving test images it never chose a
    checkpoint on (``val_fraction == 0`` and ``eval_samples`` set)."""
    return config.val_fraction == 0 and config.eval_samples is not None


def run_image_size(config: TrainConfig) -> int:
    """``config.image_size``, or the dataset's own image side: known for named datasets, read from the first
    image of a folder."""
    if config.image_size:
        return config.image_size
    if config.dataset in NATIVE_SIZES:
        return NATIVE_SIZES[config.dataset]
    first = _load(config, "train", 0, None)[0][0]  # with skip_bad_images, the first readable image
    width, height = first.size if hasattr(first, "size") and not callable(first.size) else first.shape[-1:-3:-1]
    return int(max(width, height))


def build_run_data(config: TrainConfig, ctx: DistContext) -> RunData:
    """Build the datasets, splits and loaders that ``config`` describes (sharded across ranks under torchrun)."""
    mean, std = dataset_stats(config.dataset)
    size = run_image_size(config)
    view_options = {"crop_scale": (config.view_crop_min, 1.0), "colour": config.view_colour}
    random_view = supcon_random_view(size, mean, std, **view_options)
    standard = standard_view(size, mean, std)
    if config.views_on_device:
        contrastive_tf = single_tf = pixels_view(size)
    else:
        contrastive_tf, single_tf = ExConTransform(random_view, standard), random_view

    synthetic = config.dataset == "synthetic"
    train = _load(config, "train", size, config.train_samples if synthetic and config.val_fraction == 0 else None)
    train_contrastive, train_single = _with_transform(train, contrastive_tf), _with_transform(train, single_tf)
    num_classes = len(train.classes)  # type: ignore[attr-defined]
    if config.val_fraction > 0:
        train_contrastive, val_set = split_train_val(train_contrastive, config.val_fraction, seed=config.seed,
                                                     val_dataset=_with_transform(train, standard))
        train_single = Subset(train_single, train_contrastive.indices)
    else:
        val_set = _with_transform(_load(config, "test", size, config.eval_samples if synthetic else None), standard)
    if config.train_samples is not None and len(train_contrastive) > config.train_samples:
        train_contrastive = subset(train_contrastive, config.train_samples, seed=config.seed)
        train_single = Subset(train_single, train_contrastive.indices)  # type: ignore[arg-type]
    if config.eval_samples is not None and len(val_set) > config.eval_samples:
        val_set = subset(val_set, config.eval_samples, seed=config.seed + 1)
    # Before any training: one label space for both splits, and images that decode, so a broken dataset fails in
    # seconds rather than after an epoch. The first training batch only (a full scan is `exaug train
    # --check-data`); the whole validation split, which every epoch reads anyway: its draft-mode check costs less
    # than one validation pass, and a bad image there would otherwise stop the run after its first training epoch.
    check_class_maps(train_contrastive, val_set)
    if not config.skip_bad_images:
        check_images(train_contrastive, range(min(len(train_contrastive), config.batch_size))).raise_if_bad()
        check_images(val_set, num_workers=config.workers).raise_if_bad()

    global_batch = config.batch_size * ctx.world_size
    if len(train_contrastive) < global_batch:
        raise ValueError(
            f"the training split has {len(train_contrastive)} images, fewer than one batch "
            f"(batch_size {config.batch_size} x {ctx.world_size} processes); lower --batch-size"
        )

    def loader(dataset: Dataset, train: bool) -> DataLoader:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=train, seed=config.seed,
                                     drop_last=train) if ctx.enabled else None
        return DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            # Full batches only: contrastive batches of different sizes would weigh ranks unequally, and a
            # BatchNorm layer cannot train on a batch of one.
            drop_last=train,
            num_workers=config.workers,
            pin_memory=ctx.device.type == "cuda",
            # Workers are re-created each epoch so their seeds follow the per-epoch reseeded generator.
            persistent_workers=False,
            generator=torch.Generator().manual_seed(config.seed),
        )

    device_views = DeviceViewAugment(size, mean, std, **view_options).to(ctx.device) if config.views_on_device else None
    return RunData(
        num_classes=num_classes,
        image_size=size,
        mean=tuple(mean),
        std=tuple(std),
        train_size=len(train_contrastive),
        val_size=len(val_set),
        # Same length, so the same order and views as the plain split; the index keys the saliency cache.
        contrastive=loader(IndexedDataset(train_contrastive), True),
        single=loader(train_single, True),
        val=loader(val_set, False),
        device_views=device_views,
    )
