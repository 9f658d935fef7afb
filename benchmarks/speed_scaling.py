"""The sections of ``speed.py`` that compare exaug's batched paths with per-sample loops as the batch grows.

  routing  ExConB augmentation incl. its Grad-CAM with a tiny model (compute negligible, the regime of a GPU) at
           growing batch sizes, against a naive per-sample implementation of the reference code's loop
  memory   peak memory of the ExConB augmentation (TinyNet and CIFAR ResNet-18) and of the naive per-sample
           routing: torch's CPU tensor memory (profiler), the Python heap (tracemalloc), CUDA's allocator
  drop_increase  batched drop/increase (one explainer pass, one forward per keep fraction, in chunks of 128
           images) vs the whole batch at once and per-image loops

Run them through ``python benchmarks/speed.py --sections routing memory drop_increase``; this module also holds the models and
seed every section of ``speed.py`` shares.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, time_interleaved  # noqa: E402

import exaug  # noqa: E402
from exaug.models import Classifier, LinearClassifier, SupConModel, create_encoder, default_explainer_layer  # noqa: E402

#: Every section seeds torch with this before drawing its model and inputs.
SEED = 0


def resnet18_models(width: float, num_classes: int, device: torch.device) -> tuple[SupConModel, Classifier]:
    """A CIFAR ResNet-18 SupCon model and its linear classifier on the same encoder."""
    encoder = create_encoder("resnet18", width=width, image_size=32)
    model = SupConModel(encoder, head="mlp", feat_dim=128).to(device)
    classifier = Classifier(model.encoder, LinearClassifier(encoder.num_features, num_classes).to(device))
    return model, classifier


class TinyNet(nn.Module):
    """A network whose compute is negligible (a 1x1 conv on every 4th pixel), so that the routing machinery
    itself is measured, as on a GPU where the forward passes are cheap."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x[..., ::4, ::4])).mean(dim=(2, 3)))


def naive_exconb_routing(model: nn.Module, explainer: Any, x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
                         y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference code's shape: per-sample loop, host syncs per sample, torch.cat inside the loop."""
    first = x[:0]
    background = x[:0]
    bg_labels = y[:0]
    sal = explainer(x, y)
    for i in range(x.shape[0]):
        keep = sal[i : i + 1] > 0.5
        masked = torch.where(keep, x[i : i + 1], torch.zeros(()))
        with torch.no_grad():
            correct = model(masked).argmax(1).item() == y[i].item()
        if correct:
            first = torch.cat([first, masked])
        else:
            first = torch.cat([first, v1[i : i + 1]])
            background = torch.cat([background, masked])
            bg_labels = torch.cat([bg_labels, y[i : i + 1]])
    images = torch.cat([first, background, v2, background])
    return images, torch.cat([y, bg_labels])


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning large blocks to the OS (``mallopt``).

    On the CPU every large tensor otherwise comes back from the OS as fresh pages, and touching them costs
    page faults that are about half of the routing time at batch 1024. GPUs never see this (PyTorch's caching
    allocator reuses blocks), so this setting is what "the regime of a GPU" means on a CPU. Returns False where
    ``mallopt`` is unavailable (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False


def bench_routing(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(SEED)
    model = TinyNet().to(device).eval()
    explainer = exaug.create_explainer("gradcam", model, target_layer="conv")
    aug = exaug.ExplanationMaskAugment(explainer, mode="exconb")
    inputs = {}
    for b in args.routing_batches:
        x = torch.randn(b, 3, 32, 32, device=device)
        inputs[b] = (x, torch.randn_like(x), torch.randn_like(x), torch.randint(0, 10, (b,), device=device))

    def measure(with_naive: bool) -> dict[str, dict[str, float]]:
        results = {}
        for b, (x, v1, v2, y) in inputs.items():
            fns = {"batched": lambda: aug(x, (v1, v2), y, model)}
            if with_naive and b <= args.naive_max_batch:
                fns["naive"] = lambda: naive_exconb_routing(model, explainer, x, v1, v2, y)
            results[str(b)] = time_interleaved(fns, repeats=args.repeats, warmup=1, device=device)
        return results

    default = measure(with_naive=True)
    caching = measure(with_naive=False) if device.type == "cpu" and keep_freed_memory() else None
    rows = [[b, default[str(b)]["batched"], caching[str(b)]["batched"] if caching else float("nan"),
             default[str(b)].get("naive", float("nan"))] for b in args.routing_batches]
    growth = {}
    if "256" in default and "1024" in default:
        growth["batched_1024_over_256"] = default["1024"]["batched"] / default["256"]["batched"]
        if caching:
            growth["batched_kept_memory_1024_over_256"] = caching["1024"]["batched"] / caching["256"]["batched"]
        if "naive" in default["1024"]:
            growth["naive_1024_over_256"] = default["1024"]["naive"] / default["256"]["naive"]
    print("\n## ExConB routing incl. Grad-CAM, tiny model, 32x32 (seconds per call)")
    print(table(rows, ["batch", "batched (exaug)", "batched, freed memory kept", "naive per-sample loop"]))
    for key, value in growth.items():
        print(f"{key}: {value:.2f}")
    return {"seconds": default, "seconds_freed_memory_kept": caching, "batches": args.routing_batches, **growth}


def profiled_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of torch's CPU tensor memory while ``fn`` runs, above the level at its start (bytes).

    The profiler records one ``[memory]`` event per allocation (+bytes) and free (-bytes) of torch's CPU allocator;
    their running sum in time order is the tensor memory held, relative to the start. The raw Kineto events are
    read directly: ``prof.events()`` attributes each allocation to every enclosing op, so summing its
    ``cpu_memory_usage`` would count nested allocations several times (and its parsing is quadratic).
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == DeviceType.CPU), key=lambda e: e[0])
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


def measure_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, float]:
    """Peak memory of one call of ``fn`` (after one warm-up call), in bytes, by three instruments."""
    fn()
    gc.collect()
    result = {"torch_cpu_peak": float(profiled_peak_bytes(fn))}
    # tracemalloc sees only the Python heap: torch's tensor allocator bypasses it, so this stays small and the
    # profiler number above is the one that measures the augmentation's tensors.
    tracemalloc.start()
    try:
        fn()
        result["python_heap_peak"] = float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        result["cuda_peak"] = float(torch.cuda.max_memory_allocated(device) - before)
    return result


def bench_memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Peak memory of the batched ExConB augmentation (TinyNet, CIFAR ResNet-18) and of the naive routing."""
    torch.manual_seed(SEED)
    b = args.memory_batch
    x = torch.randn(b, 3, 32, 32, device=device)
    v1, v2 = torch.randn_like(x), torch.randn_like(x)
    input_bytes = x.numel() * x.element_size()
    tiny = TinyNet(100).to(device).eval()
    tiny_explainer = exaug.create_explainer("gradcam", tiny, target_layer="conv")
    tiny_aug = exaug.ExplanationMaskAugment(tiny_explainer, mode="exconb")
    _, resnet = resnet18_models(args.width, 100, device)
    resnet.eval()
    layer = default_explainer_layer("resnet18", 32)
    resnet_aug = exaug.ExplanationMaskAugment(exaug.create_explainer("gradcam", resnet, target_layer=layer),
                                              mode="exconb")
    y = torch.randint(0, 100, (b,), device=device)
    cases: dict[str, Callable[[], Any]] = {
        "exconb, TinyNet": lambda: tiny_aug(x, (v1, v2), y, tiny),
        f"exconb, CIFAR ResNet-18 (width {args.width}), Grad-CAM at {layer}":
            lambda: resnet_aug(x, (v1, v2), y, resnet),
        "naive per-sample routing, TinyNet": lambda: naive_exconb_routing(tiny, tiny_explainer, x, v1, v2, y),
    }
    mb = 1e6
    results: dict[str, Any] = {}
    rows = []
    for name, fn in cases.items():
        peaks = measure_memory(fn, device)
        results[name] = {**peaks, "torch_cpu_peak_over_input": peaks["torch_cpu_peak"] / input_bytes}
        row = [name, peaks["torch_cpu_peak"] / mb, peaks["torch_cpu_peak"] / input_bytes,
               peaks["python_heap_peak"] / mb]
        if device.type == "cuda":
            row += [peaks["cuda_peak"] / mb, peaks["cuda_peak"] / input_bytes]
        rows.append(row)
    header = ["augmentation", "torch CPU peak MB", "x input batch", "Python heap peak MB (tracemalloc)"]
    if device.type == "cuda":
        header += ["CUDA peak MB", "x input batch"]
    print(f"\n## Peak memory, batch {b} of 32x32 (input batch {input_bytes / mb:.3g} MB; views v1, v2 the same size)")
    print(table(rows, header))
    return {"batch": b, "input_bytes": input_bytes, "cases": results}


def naive_drop_increase(model: nn.Module, explainer: Any, images: torch.Tensor, keep_fractions: tuple[float, ...]
                        ) -> dict[float, float]:
    """The reference code's shape: one image at a time, an explanation and a forward per keep fraction each."""
    drops = {q: 0.0 for q in keep_fractions}
    for i in range(images.shape[0]):
        x = images[i : i + 1]
        explanation = explainer.explain(x)
        p_orig, predicted = explanation.logits.softmax(1).max(1)
        for q in keep_fractions:
            keep = torch.zeros(x.shape[-2] * x.shape[-1], dtype=torch.bool)
            keep[explanation.saliency.flatten().argsort(descending=True)[: round(q * keep.numel())]] = True
            perturbed = torch.where(keep.view(1, 1, *x.shape[-2:]), x, torch.zeros(()))
            with torch.no_grad():
                p = model(perturbed).softmax(1)[0, predicted.item()].item()
            drops[q] += float(p < p_orig.item()) / images.shape[0]
    return drops


def reference_shaped_drop_increase(model: nn.Module, layer: nn.Module, images: torch.Tensor,
                                   keep_fractions: tuple[float, ...]) -> dict[float, float]:
    """The shape the NOTES describe for the reference code (~10 batch-of-one passes per image): a prediction,
    pytorch-grad-cam's GradCAM (forward + full backward), then per keep fraction a forward of the original and
    one of the perturbed image."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    drops = {q: 0.0 for q in keep_fractions}
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for i in range(images.shape[0]):
            x = images[i : i + 1]
            with torch.no_grad():
                predicted = int(model(x).argmax(1))
            sal = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(predicted)]))
            for q in keep_fractions:
                keep = torch.zeros(x.shape[-2] * x.shape[-1], dtype=torch.bool)
                keep[sal.flatten().argsort(descending=True)[: round(q * keep.numel())]] = True
                perturbed = torch.where(keep.view(1, 1, *x.shape[-2:]), x, torch.zeros(()))
                with torch.no_grad():
                    p_orig = model(x).softmax(1)[0, predicted].item()
                    p = model(perturbed).softmax(1)[0, predicted].item()
                drops[q] += float(p < p_orig) / images.shape[0]
    return drops


class SmallCNN(nn.Module):
    """Two convolutions, global pooling and a linear head: the "small model" of the drop/increase comparison."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def bench_drop_increase(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Batched drop/increase (one explainer pass + one forward per keep fraction) vs per-image loops."""
    from exaug.metrics import DropIncrease

    torch.manual_seed(SEED)
    _, resnet = resnet18_models(args.drop_width, 10, device)
    models = {
        f"CIFAR ResNet-18 (width {args.drop_width})": (resnet.eval(), default_explainer_layer("resnet18", 32)),
        "small CNN (2 convs)": (SmallCNN().to(device).eval(), "features.2"),
    }
    images = torch.randn(args.drop_batch, 3, 32, 32, device=device)
    fractions = (0.15, 0.30, 0.45)
    results: dict[str, Any] = {}
    rows = []
    for name, (model, layer) in models.items():
        explainer = exaug.create_explainer("gradcam", model, target_layer=layer)
        layer_module = dict(model.named_modules())[layer]

        def batched(chunk_size: int | None = 128) -> dict[float, float]:
            metric = DropIncrease(explainer, model, keep_fractions=fractions, chunk_size=chunk_size)
            metric.update(images)
            return {q: float(v["drop_percent"]) for q, v in metric.compute().items()}

        times = time_interleaved(
            {"batched": batched,
             "batched, whole batch": lambda: batched(chunk_size=None),
             "naive": lambda: naive_drop_increase(model, explainer, images, fractions),
             "reference-shaped": lambda: reference_shaped_drop_increase(model, layer_module, images, fractions)},
            repeats=max(1, args.repeats // 3), warmup=1, device=device,
        )
        agree = max(abs(batched()[q] - naive_drop_increase(model, explainer, images, fractions)[q]) for q in fractions)
        ratios = {key: times[key] / times["batched"] for key in times}
        results[name] = {"seconds": times, "naive_over_batched": ratios["naive"],
                         "reference_shaped_over_batched": ratios["reference-shaped"],
                         "max_abs_drop_percent_difference": agree}
        results[name]["whole_batch_over_chunked"] = ratios["batched, whole batch"]
        rows.append([name, times["batched"], times["batched, whole batch"], times["naive"], ratios["naive"],
                     times["reference-shaped"], ratios["reference-shaped"], agree])
    print(f"\n## Drop/increase at keep 0.15/0.30/0.45, batch {args.drop_batch} (seconds)")
    print("batched: DropIncrease's default chunks of 128 images; whole batch: chunk_size=None")
    print(table(rows, ["model", "batched", "whole batch", "naive loop", "x", "reference-shaped loop", "x",
                       "max |diff| drop%"]))
    return {"batch": args.drop_batch, "models": results}
