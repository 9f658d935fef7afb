"""Does EDDA align model and explainer? Short CPU runs of ``ce``, ``edda`` and the random-occlusion control.

    python benchmarks/edda_alignment.py            # full run (about 10 min on 1 CPU thread of a loaded machine), writes
                                                   # results/edda_alignment.json
    python benchmarks/edda_alignment.py --quick    # seconds, for smoke tests
    python benchmarks/edda_alignment.py --data ../shared/data/cifar10-jpeg.zip   # adds CIFAR-10 if the zip exists

For every dataset and variant (``ce``; ``edda`` with the explanation policy; ``edda`` with the random policy),
one run is trained per seed with the reference trainer, then its encoder + classifier is evaluated on held-out
images with Grad-CAM at the trainer's explainer layer, explaining the *predicted* class:

* ``sal_drop`` / ``non_drop``: mean confidence drop (probability of the predicted class, original minus
  occluded) when the top / bottom ``--fraction`` of pixels by saliency are occluded (zero fill), the core EDDA
  property; ``gap = sal_drop - non_drop`` should grow when explanations and model align;
* ``del_auc`` (lower is better) / ``ins_auc`` (higher is better): deletion / insertion with a blurred baseline;
* ``drop%`` / ``inc%`` at keep 0.45: drop/increase (NOTES §7), keeping the most salient 45% of the pixels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402

from exaug.augment import EDDAAugment  # noqa: E402
from exaug.metrics import DropIncrease, InsertionDeletion  # noqa: E402
from exaug.metrics.base import predict  # noqa: E402
from exaug.training import TrainConfig, Trainer  # noqa: E402
from exaug.training.loaders import build_eval_dataset  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "ce": {"method": "ce"},
    "edda": {"method": "edda", "edda_policy": "explanation"},
    "edda_random": {"method": "edda", "edda_policy": "random"},
}
METRICS = ("top1", "sal_drop", "non_drop", "gap", "del_auc", "ins_auc", "drop%", "inc%")


@torch.no_grad()
def confidence_drops(model: torch.nn.Module, images: torch.Tensor, layer: str, fraction: float) -> dict[str, float]:
    """Mean drop of the predicted class's probability under salient / non-salient occlusion (EDDAAugment's)."""
    predicted = predict(model, images).argmax(dim=1)
    augment = EDDAAugment("gradcam", salient_fraction=fraction, target="soft", explain="predicted",
                          explainer_options={"target_layer": layer})
    with torch.enable_grad():
        batch = augment(images, predicted, model)
    p_orig = batch.logits.softmax(dim=1).gather(1, predicted[:, None]).squeeze(1)
    p_occ = predict(model, batch.images).softmax(dim=1).gather(1, batch.labels[:, None]).squeeze(1)
    drop = p_orig[batch.source] - p_occ
    return {"sal_drop": float(drop[batch.salient].mean()), "non_drop": float(drop[batch.nonsalient].mean())}


def evaluate(trainer: Trainer, samples: int, fraction: float, steps: int) -> dict[str, float]:
    dataset = build_eval_dataset(trainer.config, "test", samples)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
    model, layer = trainer.classifier_model, trainer.explainer_layer
    out: dict[str, float] = {"top1": 100.0 * float((predict(model, images, 256).argmax(1) == labels).float().mean())}
    drops, ins_del = [], InsertionDeletion("gradcam", model, steps=steps, target_layer=layer)
    drop_inc = DropIncrease("gradcam", model, keep_fractions=(0.45,), target_layer=layer)
    for chunk in images.split(128):
        drops.append((chunk.shape[0], confidence_drops(model, chunk, layer, fraction)))
        ins_del.update(chunk)
        drop_inc.update(chunk)
    for key in ("sal_drop", "non_drop"):
        out[key] = sum(n * d[key] for n, d in drops) / images.shape[0]
    out["gap"] = out["sal_drop"] - out["non_drop"]
    curves = ins_del.compute()
    out["del_auc"], out["ins_auc"] = curves["deletion"]["auc"], curves["insertion"]["auc"]
    di = drop_inc.compute()[0.45]
    out["drop%"], out["inc%"] = di["drop_percent"], di["increase_percent"]
    return out


def run(args: argparse.Namespace, dataset: str, data_root: str | None, variant: str, seed: int,
        workdir: Path) -> dict[str, Any]:
    config = TrainConfig(
        dataset=dataset, data_root=data_root, model="resnet18", width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=5e-4, warmup_epochs=1 if args.epochs > 2 else 0,
        train_samples=args.train_samples, eval_samples=args.eval_samples, edda_start_epoch=args.start_epoch,
        edda_ratio=args.ratio, edda_fraction=args.fraction, edda_target=args.target, device="cpu", seed=seed,
        quiet=True, out=str(workdir / f"{dataset}-{variant}-{seed}"), **VARIANTS[variant],
    )
    started = time.time()
    trainer = Trainer(config)
    trainer.fit()
    train_seconds = time.time() - started
    metrics = evaluate(trainer, args.eval_samples, args.fraction, args.steps)
    return {"dataset": dataset, "variant": variant, "seed": seed, "train_seconds": train_seconds,
            "eval_seconds": time.time() - started - train_seconds, **metrics}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--data", default=None, help="CIFAR-10 zip (imagefolder-zip); used only if it exists")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--eval-samples", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--start-epoch", type=int, default=2, help="edda_start_epoch (explanations of an "
                                                                    "untrained model are noise)")
    parser.add_argument("--ratio", type=float, default=0.5, help="edda_ratio")
    parser.add_argument("--fraction", type=float, default=0.2, help="edda_fraction (train and evaluation)")
    parser.add_argument("--target", default="soft", help="edda_target")
    parser.add_argument("--steps", type=int, default=16, help="insertion/deletion steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train_samples, args.eval_samples = 2, 64, 32
        args.width, args.batch_size, args.start_epoch, args.steps = 0.0625, 16, 1, 4
    torch.set_num_threads(args.threads)

    datasets: list[tuple[str, str | None]] = [("synthetic", None)]
    if args.data and Path(args.data).is_file():
        datasets.append(("imagefolder-zip", args.data))
    elif args.data:
        print(f"--data {args.data!r} does not exist: synthetic only", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, root in datasets:
            for seed in range(args.seeds):
                for variant in VARIANTS:
                    row = run(args, dataset, root, variant, seed, Path(tmp))
                    rows.append(row)
                    print(f"{dataset} {variant} seed {seed}: " + ", ".join(f"{k} {row[k]:.4g}" for k in METRICS)
                          + f"  ({row['train_seconds']:.0f}s + {row['eval_seconds']:.0f}s)", flush=True)

    summary: dict[str, dict[str, dict[str, float]]] = {}
    lines = []
    for dataset, _ in datasets:
        for variant in VARIANTS:
            runs = [r for r in rows if r["dataset"] == dataset and r["variant"] == variant]
            stats = {k: {"mean": statistics.fmean(r[k] for r in runs),
                         "std": statistics.stdev([r[k] for r in runs]) if len(runs) > 1 else 0.0} for k in METRICS}
            summary.setdefault(dataset, {})[variant] = stats  # type: ignore[assignment]
            lines.append([dataset, variant, *(stats[k]["mean"] for k in METRICS)])
    print(table(lines, ["dataset", "variant", *METRICS]))
    settings = {k: v for k, v in vars(args).items()}
    path = save("edda_alignment", {"settings": settings, "runs": rows, "summary": summary}, args.quick)
    print(f"saved {path}")
    return {"summary": summary, "runs": rows}


if __name__ == "__main__":
    main()
