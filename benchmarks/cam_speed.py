"""Native batched CAM family vs pytorch-grad-cam: seconds per batch and speed-up, side by side in one run.

Setup of issue #13: CIFAR ResNet-18 (``exaug.create_model("resnet18", num_classes=10).as_classifier()``), 32x32 images, batch 64,
layer ``encoder.layer4`` (and ``encoder.layer2``), per-sample targets. Each native method (``gradcam``,
``gradcam++``, ``xgradcam``, ``layercam``, ``hirescam``, ``gradcam_elementwise``, ``eigencam``) is timed round-robin
with its ``pgc.*`` counterpart; the table gives median seconds per call and ``pgc / native``.

    python benchmarks/cam_speed.py            # full run (writes results/cam_speed.json)
    python benchmarks/cam_speed.py --quick    # smoke run: tiny width, batch 4, one repeat (cam_speed.quick.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, time_interleaved  # noqa: E402

import exaug  # noqa: E402

METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "gradcam_elementwise", "eigencam")


def run(batch: int, width: float, layers: tuple[str, ...], repeats: int, warmup: int, device: str) -> list[dict[str, Any]]:
    """Median seconds per call for every (layer, method), native and pgc, measured interleaved."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = exaug.create_model("resnet18", num_classes=10, width=width).as_classifier().to(dev).eval()
    images = torch.randn(batch, 3, 32, 32, device=dev)
    targets = torch.randint(0, 10, (batch,), device=dev)
    rows = []
    for layer in layers:
        for name in METHODS:
            native = exaug.create_explainer(name, model, target_layer=layer)
            reference = exaug.create_explainer(f"pgc.{name}", model, target_layer=layer)
            times = time_interleaved({"native": lambda: native(images, targets), "pgc": lambda: reference(images, targets)},
                                     repeats=repeats, warmup=warmup, device=dev)
            rows.append({"layer": layer, "method": name, "native_s": times["native"], "pgc_s": times["pgc"],
                         "speedup": times["pgc"] / times["native"]})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (seconds): width 0.125, batch 4, 1 repeat")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: results/cam_speed[.quick].json)")
    args = parser.parse_args(argv)
    if args.quick:
        config = dict(batch=4, width=0.125, layers=("encoder.layer4",), repeats=1, warmup=0)
    else:
        config = dict(batch=args.batch, width=1.0, layers=("encoder.layer4", "encoder.layer2"), repeats=args.repeats,
                      warmup=1)
    rows = run(device=args.device, **config)
    payload = {"machine": machine(), "config": {**config, "device": args.device, "quick": args.quick}, "rows": rows}
    output = args.output or Path(__file__).resolve().parent / "results" / f"cam_speed{'.quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2))
    print(table([[r["layer"], r["method"], r["native_s"], r["pgc_s"], r["speedup"]] for r in rows],
                ["layer", "method", "native s", "pgc s", "pgc / native"]))
    print(f"written {output}")
    return payload


if __name__ == "__main__":
    main()
