"""One-GPU check (issue #13): SupCon / ExCon / ExConB step times of the paper's CIFAR ResNet-50, an Algorithm-1
epoch, and a SupContrast-style baseline loop, on synthetic CIFAR-sized data (no download). About 5-8 minutes.

What it measures (``results/gpu_check.json`` + a table):

* per-step seconds of the exaug encoder step (views on the device, explanation + masks + contrastive loss +
  backward + SGD step) for ``supcon``, ``excon`` and ``exconb`` at batch 256, 32x32, measured round-robin on one
  prefetched batch (data loading excluded), their ratios to SupCon, images/s and the peak
  ``torch.cuda.max_memory_allocated`` of each;
* one Algorithm-1 epoch (encoder epoch + linear-classifier epoch + validation, data loading included) of
  ``supcon`` and ``exconb`` on ``--epoch-images`` images, scaled to CIFAR-100's 50,000: ``epoch_seconds`` (SupCon)
  is what ``reproduce_cifar100.py --estimate`` reads instead of its assumed 75 s;
* the SupContrast-style baseline: per-image torchvision views in DataLoader workers, fp32, contiguous format,
  SupConLoss (exaug's, equal to SupContrast's), same network and GPU; seconds per step with loading included.

Run on a GPU machine (TF32 on by default for fp32 matmuls/convolutions, as SupContrast's cudnn defaults)::

    python benchmarks/gpu_check.py                                   # fp32/TF32
    python benchmarks/gpu_check.py --amp bf16 --channels-last        # the fast settings
    python benchmarks/gpu_check.py --amp bf16 --channels-last --compile
    python benchmarks/gpu_check.py --device cpu --quick              # smoke run (what the test suite runs)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from common import save, sync, table, time_interleaved

from exaug import SupConLoss, TwoCropTransform, supcon_random_view
from exaug.training import TrainConfig, Trainer

METHODS = ("supcon", "excon", "exconb")
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # SupContrast's CIFAR-100 values


class RandomCifar(Dataset):
    """``n`` random 32x32 RGB PIL images with labels in ``[0, 100)``: CIFAR's format without the download."""

    def __init__(self, n: int, transform: Any, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.pixels = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g).numpy()
        self.labels = torch.randint(0, 100, (n,), generator=g).tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[i])), self.labels[i]


def trainer_for(method: str, args: argparse.Namespace, samples: int, out: str) -> Trainer:
    return Trainer(TrainConfig(
        method=method, dataset="synthetic", model=args.model, width=args.width, batch_size=args.batch_size,
        image_size=args.image_size, train_samples=samples, eval_samples=max(samples * CIFAR_TEST // CIFAR_TRAIN,
                                                                            args.batch_size),
        epochs=1, exp_start_epoch=0, views_on_device=True, amp=args.amp, channels_last=args.channels_last,
        compile=args.compile, device=args.device, workers=args.workers, quiet=True, out=f"{out}/{method}"))


def step_fn(trainer: Trainer) -> Any:
    """One encoder step of ``trainer`` on one prefetched batch (so only the model work is timed)."""
    trainer.reseed(0, 0)
    trainer.model.train()
    trainer.method.augment.enabled = trainer.method.explains(0)
    batch = next(iter(trainer.contrastive_batches(0)))

    def step() -> None:
        loss, _ = trainer.method.contrastive_step_loss(*batch)
        trainer.optimizer_step(trainer.encoder_optimizer, loss, 0, 0)

    return step


def peak_memory(step: Any, device: torch.device) -> float | None:
    """Peak MB allocated by two steps (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def epoch_seconds(trainer: Trainer) -> float:
    """One Algorithm-1 epoch (encoder, classifier, validation) of ``trainer``, data loading included."""
    sync(trainer.device)
    start = time.perf_counter()
    trainer.method.run_epoch(0)
    sync(trainer.device)
    return time.perf_counter() - start


def baseline_step_seconds(args: argparse.Namespace, trainer: Trainer, steps: int, warmup: int) -> float:
    """Median seconds per step of a SupContrast-style loop: per-image views in DataLoader workers, fp32."""
    view = supcon_random_view(args.image_size, CIFAR_MEAN, CIFAR_STD)
    data = RandomCifar(args.batch_size * (steps + warmup), TwoCropTransform(view), args.image_size)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        pin_memory=trainer.device.type == "cuda", drop_last=True,
                        persistent_workers=args.workers > 0)
    model = trainer.model.to(memory_format=torch.contiguous_format)  # the SupCon trainer's network, fp32
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    criterion = SupConLoss(0.1)
    model.train()
    times = []
    sync(trainer.device)
    start = time.perf_counter()
    for i, ((v1, v2), labels) in enumerate(loader):
        images = torch.cat([v1, v2]).to(trainer.device, non_blocking=True)
        labels = labels.to(trainer.device, non_blocking=True)
        features = F.normalize(model(images), dim=1)
        b = labels.shape[0]
        loss = criterion(torch.stack((features[:b], features[b:]), dim=1), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(trainer.device)
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - start)
        start = now
    return statistics.median(times)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... (cpu only with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, batch 8, 2 steps")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forwards")
    parser.add_argument("--no-tf32", action="store_true", help="strict fp32 matmuls and convolutions")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (epoch and baseline)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method")
    parser.add_argument("--epoch-images", type=int, default=10_000,
                        help="images of the measured epoch (scaled to 50,000)")
    args = parser.parse_args(argv)
    args.model, args.width, args.batch_size, args.image_size, args.warmup = "resnet50", 1.0, 256, 32, 5
    if args.quick:
        args.model, args.width, args.batch_size, args.steps, args.warmup = "resnet18", 0.0625, 8, 2, 1
        args.epoch_images, args.workers = 16, 0
    if args.steps < 1 or args.epoch_images < args.batch_size:
        parser.error(f"--steps must be >= 1 and --epoch-images >= the batch size {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not args.no_tf32
        torch.backends.cudnn.benchmark = True
    out = tempfile.mkdtemp(prefix="gpu_check_")
    trainers = {m: trainer_for(m, args, args.batch_size, out) for m in METHODS}
    steps = {m: step_fn(t) for m, t in trainers.items()}
    seconds = time_interleaved(steps, repeats=args.steps, warmup=args.warmup, device=device)
    memory = {m: peak_memory(steps[m], device) for m in METHODS}
    epochs = {m: epoch_seconds(trainer_for(m, args, args.epoch_images, out)) * CIFAR_TRAIN / args.epoch_images
              for m in ("supcon", "exconb")}
    baseline = baseline_step_seconds(args, trainers["supcon"], args.steps, args.warmup)
    rows = [{"loop": f"exaug {m}", "step_seconds": seconds[m], "ratio_to_supcon": seconds[m] / seconds["supcon"],
             "images_per_second": args.batch_size / seconds[m], "peak_memory_mb": memory[m]} for m in METHODS]
    rows.append({"loop": "SupContrast-style (workers, fp32)", "step_seconds": baseline,
                 "ratio_to_supcon": baseline / seconds["supcon"], "images_per_second": args.batch_size / baseline,
                 "peak_memory_mb": None})
    settings = {k: getattr(args, k) for k in ("device", "amp", "channels_last", "compile", "no_tf32", "model",
                                              "width", "batch_size", "image_size", "steps", "epoch_images",
                                              "workers")}
    payload = {"settings": settings, "rows": rows, "algorithm1_epoch_seconds": epochs,
               "epoch_seconds": epochs["supcon"], "explanation_factor": epochs["exconb"] / epochs["supcon"]}
    path = save("gpu_check", payload, args.quick)
    print(table([[r["loop"], r["step_seconds"], r["ratio_to_supcon"], r["images_per_second"],
                  "-" if r["peak_memory_mb"] is None else r["peak_memory_mb"]] for r in rows],
                ["loop", "s/step", "x SupCon", "images/s", "peak MB"]))
    print(f"Algorithm-1 epoch (scaled to {CIFAR_TRAIN} images): supcon {epochs['supcon']:.1f} s, exconb "
          f"{epochs['exconb']:.1f} s (x{payload['explanation_factor']:.2f}); wrote {path}")
    return payload


if __name__ == "__main__":
    main()
