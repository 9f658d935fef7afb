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
  routing  ExConB routing at growing batch sizes vs a naive per-sample loop (speed_scaling.py)
  views    the SupCon random view per image with torchvision (DataLoader path) vs batched with Kornia
  drop_increase  batched drop/increase (one explainer pass, one forward per keep fraction, in chunks of 128
           images) vs the whole batch at once and per-image loops
  explainers  each explainer's cost per batch as a multiple of one no-grad forward of the same model and batch
           (CIFAR ResNet-18), with the options that keep it usable in training (few steps / samples / masks)
           and the ExConB augment with IG when every map is recomputed vs read from a SaliencyCache
  memory   peak memory of the ExConB augmentation and of the naive routing (speed_scaling.py)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save, table, time_interleaved  # noqa: E402
from speed_scaling import SEED, bench_drop_increase, bench_memory, bench_routing, resnet18_models  # noqa: E402

import exaug  # noqa: E402
from exaug.explainers import normalize_saliency  # noqa: E402
from exaug.losses import ExConBLoss, SupConLoss  # noqa: E402
from exaug.models import default_explainer_layer  # noqa: E402

#: CAM methods timed inside the ExCon step besides Grad-CAM (``pgc.gradcam++``: the backend used before #13).
CAM_IN_STEP = ("gradcam++", "layercam", "pgc.gradcam++")


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
