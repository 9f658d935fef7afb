"""Speed of exaug's hot paths, as ratios measured side by side in one run.

    python benchmarks/speed.py            # full run (a few minutes on 2 CPU cores), writes results/speed.json
    python benchmarks/speed.py --quick    # seconds, for smoke tests

Sections:
  step     one ExCon / ExConB training step vs a plain SupCon step (CIFAR ResNet-18, 32x32, batch 64,
           Grad-CAM at the paper's layer2 of the encoder), and the ExCon step with native Grad-CAM++ / LayerCAM
           (and pytorch-grad-cam's Grad-CAM++) at the same layer
  gradcam  native batched Grad-CAM vs pytorch-grad-cam's GradCAM vs Captum's LayerGradCam, same layer and model,
           with the max difference of the (re-normalised) maps
  cam_family  every native CAM method vs its pytorch-grad-cam counterpart at layer4 and layer2 (cam_speed.py)
  cache_memory  SaliencyCache bytes per image, CIFAR and ImageNet sizes, native vs pixel maps, per dtype
           (cache_memory.py; memory, not time)
  routing  ExConB augmentation incl. its Grad-CAM with a tiny model (compute negligible, the regime of a GPU) at
           growing batch sizes, against a naive per-sample implementation of the reference code's loop
  views    the SupCon random view per image with torchvision (DataLoader path) vs batched with Kornia
  drop_increase  batched drop/increase (one explainer pass, one forward per keep fraction, in chunks of 128
           images) vs the whole batch at once and per-image loops
  explainers  each explainer's cost per batch as a multiple of one no-grad forward of the same model and batch
           (CIFAR ResNet-18), with the options that keep it usable in training (few steps / samples / masks)
           and the ExConB augment with IG when every map is recomputed vs read from a SaliencyCache
  memory   peak memory of the ExConB augmentation (TinyNet and CIFAR ResNet-18) and of the naive per-sample
           routing: torch's CPU tensor memory (profiler), the Python heap (tracemalloc), CUDA's allocator
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save, table, time_interleaved  # noqa: E402

import exaug  # noqa: E402
from exaug.explainers import normalize_saliency  # noqa: E402
from exaug.losses import ExConBLoss, SupConLoss  # noqa: E402
from exaug.models import Classifier, LinearClassifier, SupConModel, create_encoder, default_explainer_layer  # noqa: E402


#: Every section seeds torch with this before drawing its model and inputs.
SEED = 0
#: CAM methods timed inside the ExCon step besides Grad-CAM (``pgc.gradcam++``: the backend used before #13).
CAM_IN_STEP = ("gradcam++", "layercam", "pgc.gradcam++")


def resnet18_models(width: float, num_classes: int, device: torch.device) -> tuple[SupConModel, Classifier]:
    encoder = create_encoder("resnet18", width=width, image_size=32)
    model = SupConModel(encoder, head="mlp", feat_dim=128).to(device)
    classifier = Classifier(model.encoder, LinearClassifier(encoder.num_features, num_classes).to(device))
    return model, classifier


def bench_step(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(SEED)
    b = args.batch
    model, classifier = resnet18_models(args.width, 100, device)
    layer = default_explainer_layer("resnet18", 32)
    x = torch.randn(b, 3, 32, 32, device=device)
    v1, v2 = torch.randn_like(x), torch.randn_like(x)
    y = torch.randint(0, 100, (b,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    supcon, exconb_loss = SupConLoss(0.1), ExConBLoss(0.1)
    augments = {mode: exaug.ExplanationMaskAugment("gradcam", mode=mode, explainer_options={"target_layer": layer})
                for mode in ("excon", "exconb")}
    # The ExCon step with the other CAM methods at the same layer: native (issue #13) and, for Grad-CAM++, the
    # pytorch-grad-cam backend those names went through before.
    cam_augments = {name: exaug.ExplanationMaskAugment(name, mode="excon", explainer_options={"target_layer": layer})
                    for name in CAM_IN_STEP}

    def supcon_step() -> None:
        z = model(torch.cat([v1, v2]))
        loss = supcon(torch.stack(z.chunk(2), dim=1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def explained_step(mode: str) -> None:
        batch = augments[mode](x, (v1, v2), y, classifier)
        features = batch.as_views(model(batch.images))
        loss = exconb_loss(features, batch.labels, batch.background) if mode == "exconb" else supcon(features, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def augment_only() -> None:
        augments["excon"](x, (v1, v2), y, classifier)

    def cam_step(name: str) -> None:
        batch = cam_augments[name](x, (v1, v2), y, classifier)
        loss = supcon(batch.as_views(model(batch.images)), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    steps = {"supcon": supcon_step, "excon": lambda: explained_step("excon"),
             "exconb": lambda: explained_step("exconb"), "augment_only": augment_only}
    steps.update({f"excon[{name}]": (lambda name=name: cam_step(name)) for name in CAM_IN_STEP})
    times = time_interleaved(steps, repeats=args.repeats, warmup=2, device=device)
    result = {
        "batch": b, "width": args.width, "layer": layer, "seconds": times,
        "excon_over_supcon": times["excon"] / times["supcon"],
        "exconb_over_supcon": times["exconb"] / times["supcon"],
        "augment_over_supcon": times["augment_only"] / times["supcon"],
        "excon_cam_over_supcon": {name: times[f"excon[{name}]"] / times["supcon"] for name in CAM_IN_STEP},
    }
    print(f"\n## Training step, CIFAR ResNet-18 (width {args.width}), 32x32, batch {b}, Grad-CAM at {layer}")
    print(table([[k, times[k], times[k] / times["supcon"]] for k in times], ["step", "seconds", "x SupCon step"]))
    return result


def bench_gradcam(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(SEED)
    _, classifier = resnet18_models(args.width, 100, device)
    classifier.eval()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (args.batch,), device=device)
    results: dict[str, Any] = {}
    rows = []
    for layer_name in ("encoder.layer4", default_explainer_layer("resnet18", 32)):
        layer = dict(classifier.named_modules())[layer_name]
        native = exaug.create_explainer("gradcam", classifier, target_layer=layer_name)
        pgc = GradCAM(model=classifier, target_layers=[layer])
        captum = LayerGradCam(classifier, layer)
        pgc_targets = [ClassifierOutputTarget(int(t)) for t in y]

        def run_pgc() -> Any:
            return pgc(input_tensor=x, targets=pgc_targets)

        def run_captum() -> torch.Tensor:
            attr = captum.attribute(x, target=y, relu_attributions=True)
            return F.interpolate(attr, size=x.shape[-2:], mode="bilinear", align_corners=False)

        times = time_interleaved({"native": lambda: native(x, y), "pytorch-grad-cam": run_pgc, "captum": run_captum},
                                 repeats=args.repeats, warmup=2, device=device)
        ours = native(x, y)
        theirs = normalize_saliency(torch.as_tensor(run_pgc(), device=device).unsqueeze(1).float())[0]
        captum_map = normalize_saliency(run_captum().detach())[0]
        pgc.activations_and_grads.release()
        entry = {
            "seconds": times,
            "speedup_vs_pytorch_grad_cam": times["pytorch-grad-cam"] / times["native"],
            "speedup_vs_captum": times["captum"] / times["native"],
            "max_abs_diff_vs_pytorch_grad_cam": float((ours - theirs).abs().max()),
            "max_abs_diff_vs_captum": float((ours - captum_map).abs().max()),
        }
        results[layer_name] = entry
        rows.append([layer_name, times["native"], times["pytorch-grad-cam"], times["captum"],
                     entry["speedup_vs_pytorch_grad_cam"], entry["max_abs_diff_vs_pytorch_grad_cam"]])
    print(f"\n## Grad-CAM, CIFAR ResNet-18 (width {args.width}), 32x32, batch {args.batch} (float32 maps)")
    print(table(rows, ["layer", "native s", "pytorch-grad-cam s", "captum s", "speed-up vs pgc", "max |diff| vs pgc"]))
    return results


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


def bench_views(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """SupCon random view: per-image torchvision pipeline (DataLoader path) vs batched Kornia on the device."""
    from exaug.data import SyntheticShapes
    from exaug.transforms import DeviceViewAugment, supcon_random_view

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    b = args.views_batch
    dataset = SyntheticShapes("train", b)
    pixels = torch.stack([dataset[i][0] for i in range(b)])
    per_image = supcon_random_view(32, mean, std)
    batched = DeviceViewAugment(32, mean, std).to(device)
    on_device = pixels.to(device)
    times = time_interleaved(
        {"torchvision per image": lambda: torch.stack([per_image(img) for img in pixels]),
         "kornia batched": lambda: batched(on_device)},
        repeats=args.repeats, warmup=1, device=device,
    )
    rows = [[name, seconds, b / seconds] for name, seconds in times.items()]
    print(f"\n## SupCon random view, {b} images of 32x32")
    print(table(rows, ["path", "seconds", "images / s"]))
    return {"batch": b, "seconds": times, "kornia_speedup": times["torchvision per image"] / times["kornia batched"]}


def adaptive_repeats(fn: Callable[[], Any], budget: float, max_repeats: int) -> int:
    """Call ``fn`` once (it doubles as the warm-up) and return how many timed calls fit in ``budget`` seconds."""
    start = time.perf_counter()
    fn()
    return max(1, min(max_repeats, int(budget / (time.perf_counter() - start))))


def bench_explainers(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Explainer cost per batch as a multiple of one no-grad forward, each row timed side by side with it."""
    importlib.import_module("captum.attr")  # seconds of import time, kept out of the first Captum row's warm-up

    torch.manual_seed(SEED)
    b = args.batch
    _, classifier = resnet18_models(args.width, 100, device)
    classifier.eval()
    layer = default_explainer_layer("resnet18", 32)
    x = torch.randn(b, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (b,), device=device)
    # RISE costs n_masks forwards of the batch, too slow to time at full size; it is timed on the first rise_batch
    # images and scaled by b / rise_batch. Its cost is linear in the batch: with batch_size=512 every pass
    # evaluates 512 masked images whatever the batch (only the last, partial chunk differs), so b / rise_batch
    # times as many images means as many times the passes.
    rb = min(args.rise_batch, b)
    rows_spec: list[tuple[str, str, dict[str, Any]]] = [
        ("gradcam", f"target_layer={layer}", {"target_layer": layer}),
        ("integrated_gradients", "n_steps=4", {"n_steps": 4}),
        ("integrated_gradients", "n_steps=16", {"n_steps": 16}),
        ("integrated_gradients", f"n_steps=16, internal_batch_size={4 * b}",
         {"n_steps": 16, "internal_batch_size": 4 * b}),
        ("smoothgrad", "nt_samples=4", {"nt_samples": 4}),
        ("smoothgrad", "nt_samples=8", {"nt_samples": 8}),
        ("smoothgrad", "nt_samples=8, nt_samples_batch_size=2", {"nt_samples": 8, "nt_samples_batch_size": 2}),
        ("gradient_shap", "n_samples=4", {"n_samples": 4}),
        ("gradient_shap", "n_samples=8", {"n_samples": 8}),
    ] + [("rise", f"n_masks={n}, grid=4, batch_size=512", {"n_masks": n, "grid": 4, "batch_size": 512})
         for n in args.rise_masks]

    forwards_per_slot = 3

    def forward() -> None:
        # A few forwards per slot: the expensive rows get a single timed call, and one forward alone would be a
        # noisy denominator. They stay a small fraction of each row's time (every explainer costs > 1 forward).
        with torch.no_grad():
            for _ in range(forwards_per_slot):
                classifier(x)

    forward()
    results: dict[str, Any] = {}
    rows = []
    rise_warm = False
    for name, label, options in rows_spec:
        explainer = exaug.create_explainer(name, classifier, **options)
        images, targets = (x[:rb], y[:rb]) if name == "rise" else (x, y)
        scale = b / images.shape[0]

        def run() -> None:
            explainer(images, targets)

        if name == "rise" and rise_warm:
            # The RISE row before ran the very same 512-image passes, so this one is warm; one call is its timing.
            repeats = 1
        else:
            repeats = adaptive_repeats(run, args.explainer_budget, args.repeats)
        times = time_interleaved({"forward": forward, name: run}, repeats=repeats, warmup=0, device=device)
        seconds, forward_seconds = times[name] * scale, times["forward"] / forwards_per_slot
        ratio = seconds / forward_seconds
        results[f"{name} {label}"] = {
            "explainer": name, "options": options, "seconds": seconds, "forward_seconds": forward_seconds,
            "x_forward": ratio, "repeats": repeats,
            "measured_batch": images.shape[0], "measured_seconds": times[name],
        }
        rise_warm = rise_warm or name == "rise"
        rows.append([name, label + (f" (timed on {images.shape[0]}, x{scale:g})" if scale != 1 else ""),
                     seconds, forward_seconds, ratio, repeats])
    print(f"\n## Explainers vs one no-grad forward, CIFAR ResNet-18 (width {args.width}), 32x32, batch {b}")
    print(table(rows, ["explainer", "options", "s / batch", "forward s", "x forward", "repeats"]))
    cache = bench_saliency_cache(args, classifier, x, y, forward, forwards_per_slot)
    return {"batch": b, "width": args.width, "rise_measured_batch": rb, "rows": results, "saliency_cache": cache}


def bench_saliency_cache(args: argparse.Namespace, classifier: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         forward: Callable[[], None], forwards_per_slot: int) -> dict[str, Any]:
    """The ExConB augment with IG (16 steps) when every map is recomputed vs served by a :class:`SaliencyCache`.

    With ``saliency_refresh_epochs = k`` an image is explained once every k epochs and read from the cache in
    between, so the mean cost per step is ``(miss + (k - 1) * hit) / k``, from the two measured costs.
    """
    k = args.refresh_every
    b = x.shape[0]
    v1, v2 = torch.randn_like(x), torch.randn_like(x)
    indices = torch.arange(b, device=x.device)
    options = {"n_steps": 16}
    uncached = exaug.ExplanationMaskAugment("integrated_gradients", mode="exconb", explainer_options=options)
    cache = exaug.SaliencyCache(b, 32, refresh_every=k, device=x.device)
    cached = exaug.ExplanationMaskAugment("integrated_gradients", mode="exconb", explainer_options=options,
                                          cache=cache)
    cached(x, (v1, v2), y, classifier, indices)  # fills the cache: every later call in this epoch is a hit

    def run_uncached() -> None:
        uncached(x, (v1, v2), y, classifier)

    def run_hit() -> None:
        cached(x, (v1, v2), y, classifier, indices)

    repeats = adaptive_repeats(run_uncached, args.explainer_budget, args.repeats)
    times = time_interleaved({"forward": forward, "miss": run_uncached, "hit": run_hit}, repeats=repeats,
                             warmup=1, device=x.device)
    forward_seconds = times["forward"] / forwards_per_slot
    amortised = (times["miss"] + (k - 1) * times["hit"]) / k
    result = {"explainer": "integrated_gradients", "options": options, "refresh_every": k,
              "forward_seconds": forward_seconds, "miss_seconds": times["miss"], "hit_seconds": times["hit"],
              "amortised_seconds": amortised, "miss_x_forward": times["miss"] / forward_seconds,
              "hit_x_forward": times["hit"] / forward_seconds, "amortised_x_forward": amortised / forward_seconds,
              "hits": cache.hits, "misses": cache.misses}
    rows = [["every batch explained (the paper)", times["miss"], result["miss_x_forward"]],
            ["map read from the cache", times["hit"], result["hit_x_forward"]],
            [f"mean per step, saliency_refresh_epochs={k}", amortised, result["amortised_x_forward"]]]
    print(f"\n## ExConB augment with IG (16 steps), batch {b}: SaliencyCache")
    print(table(rows, ["augment", "s / batch", "x forward"]))
    return result


def bench_cam_family(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Native CAM family vs pytorch-grad-cam at layer4 (and layer2) of a CIFAR ResNet-18: ``cam_speed.py``'s rows."""
    import cam_speed

    layers = ("encoder.layer4",) if args.quick else ("encoder.layer4", "encoder.layer2")
    rows = cam_speed.run(args.batch, args.width, layers, repeats=max(args.repeats // 2, 1), warmup=1, device=str(device))
    print(f"\n## Native CAM family vs pytorch-grad-cam, CIFAR ResNet-18 (width {args.width}), batch {args.batch}")
    print(table([[r["layer"], r["method"], r["native_s"], r["pgc_s"], r["speedup"]] for r in rows],
                ["layer", "method", "native s", "pgc s", "pgc / native"]))
    return {"batch": args.batch, "width": args.width, "rows": rows}


def bench_cache_memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """SaliencyCache bytes per image at CIFAR and ImageNet sizes, per layout and dtype: ``cache_memory.py``'s rows."""
    import cache_memory

    settings, batch, width = (("cifar",), 2, 0.0625) if args.quick else (tuple(cache_memory.SETTINGS), 8, 0.25)
    rows = [row for setting in settings for row in cache_memory.measure(setting, batch, width)]
    print("\n## SaliencyCache memory per image (maps + flags + epoch stamp)")
    print(table([[r["setting"], r["layout"], "x".join(map(str, r["map_size"])), r["dtype"], r["bytes_per_image"],
                  r["dataset_megabytes"], r["max_abs_error"]] for r in rows],
                ["setting", "layout", "map", "dtype", "bytes/image", "train set MB", "max |err| vs fresh"]))
    return {"batch": batch, "rows": rows}


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    parser.add_argument("--sections", nargs="+",
                        default=["step", "gradcam", "cam_family", "cache_memory", "views", "drop_increase",
                                 "explainers", "memory", "routing"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        args.batch, args.width, args.repeats = 8, 0.125, 2
        args.routing_batches, args.naive_max_batch = [64, 256], 64
        args.views_batch = 32
        args.drop_batch, args.drop_width = 16, 0.125
        args.explainer_budget, args.rise_masks, args.rise_batch = 0.2, (50, 200), 4
        args.memory_batch = 32
    else:
        args.batch, args.width, args.repeats = 64, 1.0, 9
        args.routing_batches, args.naive_max_batch = [64, 256, 1024, 2048], 1024
        args.views_batch = 256
        args.drop_batch, args.drop_width = 256, 0.0625
        # About 5 s of timed calls per explainer row (fewer repeats for the expensive ones): ~3 min in all.
        args.explainer_budget, args.rise_masks, args.rise_batch = 5.0, (500, 2000), 4
        args.memory_batch = 256
    args.refresh_every = 10
    # routing last: it changes the process's malloc settings for its second measurement.
    sections = {"step": bench_step, "gradcam": bench_gradcam, "cam_family": bench_cam_family,
                "cache_memory": bench_cache_memory, "views": bench_views,
                "drop_increase": bench_drop_increase, "explainers": bench_explainers, "memory": bench_memory,
                "routing": bench_routing}
    results = {name: sections[name](args, device) for name in sorted(args.sections, key=list(sections).index)}
    previous = RESULTS / "speed.json"
    if not args.quick and set(args.sections) != set(sections) and previous.exists():
        # A partial run updates its sections and keeps the others' last measurements.
        results = {**json.loads(previous.read_text()).get("results", {}), **results}
    path = save("speed", {"quick": args.quick, "device": str(device), "seed": SEED, "results": results}, quick=args.quick)
    print(f"\nsaved {path}")
    return results


if __name__ == "__main__":
    main()
