"""Saliency-cache memory per image and fidelity: native vs pixel resolution, per storage dtype.

For CIFAR (32 px, CIFAR ResNet-18 at the reference layer ``encoder.layer2.1.conv2``: 16x16 maps) and ImageNet
(224 px, torchvision ResNet-18 at its last feature map: 7x7) it fills real :class:`~exaug.SaliencyCache` objects
through :class:`~exaug.ExplanationMaskAugment` (epoch 0 explains, epoch 1 serves every map from the cache) and
reports, per layout and dtype:

* ``bytes_per_image``: the cache's ``memory_bytes / N`` (maps + flat flag + epoch stamp), and what that makes for
  the whole training set (50,000 CIFAR images, 1,281,167 ImageNet images);
* ``max_abs_error``: largest |served - fresh| saliency over the batch (0 means bit for bit);
* ``keep_flipped``: fraction of keep-mask pixels (threshold 0.5) that differ from the fresh map's mask.

Not a timing benchmark: safe to run in full on a busy machine (about a minute on 2 CPU cores)::

    python benchmarks/cache_memory.py            # results/cache_memory.json + a table
    python benchmarks/cache_memory.py --quick    # smoke run (tiny batch)
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import torch

from common import save, table

from exaug import ExplanationMaskAugment, SaliencyCache, create_explainer
from exaug.models import Classifier, LinearClassifier, create_model, default_explainer_layer

DTYPES = ("float32", "float16", "bfloat16", "uint8")
#: name -> (image size, model, training-set size)
SETTINGS = {"cifar": (32, "resnet18", 50_000), "imagenet": (224, "tv:resnet18", 1_281_167)}


def classifier(model: str, image_size: int, width: float) -> Classifier:
    torch.manual_seed(0)
    encoder = create_model(model, 10, width=1.0 if model.startswith("tv:") else width,
                           image_size=image_size).encoder
    with torch.no_grad():
        dim = encoder(torch.zeros(1, 3, image_size, image_size)).shape[1]
    return Classifier(encoder, LinearClassifier(dim, 10)).eval()


def measure(setting: str, batch: int, width: float) -> list[dict[str, Any]]:
    size, model_name, dataset_size = SETTINGS[setting]
    model = classifier(model_name, size, width)
    layer = default_explainer_layer(model_name, size)
    explainer = create_explainer("gradcam", model, **({"target_layer": layer} if layer else {}))
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)
    fresh = explainer.explain(images, labels)
    fresh_keep = fresh.saliency > 0.5
    rows = []
    for dtype in DTYPES:
        for layout in ("pixel", "native"):
            cache = SaliencyCache(batch, size, dtype=getattr(torch, dtype), map_size=None if layout == "pixel"
                                  else "native")
            aug = ExplanationMaskAugment(explainer, cache=cache)
            idx = torch.arange(batch)
            aug(images, (images, images), labels, model, idx)  # epoch 0: explained and stored
            cache.set_epoch(1)
            served = aug(images, (images, images), labels, model, idx)  # epoch 1: all served from the cache
            per_image = cache.memory_bytes / batch
            rows.append({
                "setting": setting, "image_size": size, "layout": layout, "map_size": list(cache.map_size),
                "dtype": dtype, "bytes_per_image": per_image, "dataset_images": dataset_size,
                "dataset_megabytes": per_image * dataset_size / 1e6,
                "max_abs_error": float((served.saliency - fresh.saliency).abs().max()),
                "keep_flipped": float((served.keep != fresh_keep).float().mean()),
            })
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 images, CIFAR only, narrow model")
    parser.add_argument("--batch", type=int, default=32, help="images explained per setting")
    args = parser.parse_args(argv)
    batch, settings, width = (2, ("cifar",), 0.0625) if args.quick else (args.batch, tuple(SETTINGS), 0.25)
    rows = [row for setting in settings for row in measure(setting, batch, width)]
    path = save("cache_memory", {"batch": batch, "rows": rows}, args.quick)
    print(table([[r["setting"], r["layout"], "x".join(map(str, r["map_size"])), r["dtype"], r["bytes_per_image"],
                  r["dataset_megabytes"], r["max_abs_error"], r["keep_flipped"]] for r in rows],
                ["setting", "layout", "map", "dtype", "bytes/image", "train set MB", "max |err|", "keep flipped"]))
    print(f"wrote {path}")
    return {"rows": rows, "path": str(path)}


if __name__ == "__main__":
    main()
