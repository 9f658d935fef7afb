"""COCOA on CIFAR-10 with a small SupCon encoder: insertion / deletion AUCs in the paper's format (Tables 1, 2).

    python benchmarks/cocoa_cifar10.py                 # trains a width-0.25 ResNet-18 (~15 min on 1 CPU thread)
    python benchmarks/cocoa_cifar10.py --run RUNDIR    # reuse a trained run folder (skips training)
    python benchmarks/cocoa_cifar10.py --quick         # seconds-to-a-minute smoke test (numbers are meaningless)

Protocol (COCOA, Lin et al. 2023, Section 4.1): corpus = 100 training images of one class; foil = 1500 random
training images; explicands are held-out test images of the corpus class ("same", the paper's Table 1) and of the
other classes ("different", Table 2). Explanation
targets: label-free (similarity to the explicand's own representation), contrastive label-free, corpus, COCOA
(contrastive corpus similarity), each attributed with RISE (grid 4x4 on 32x32, p = 0.5, blurred baseline) and
Integrated Gradients (blurred baseline; attributions averaged over channels, signed, as in the paper), plus random
maps. Each map is evaluated with insertion and deletion (50
steps toward/away from the blurred image, trapezoid AUC) of (a) the contrastive corpus similarity and (b) the
corpus-majority probability of the run's linear classifier. Deviations from the paper to fit a CPU budget:
fewer explicands, fewer RISE masks, a few training epochs on a subset, SupCon instead of SimCLR/SimSiam.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table  # noqa: E402

import exaug  # noqa: E402
from exaug.metrics.insertion_deletion import insertion_deletion  # noqa: E402
from exaug.targets import (  # noqa: E402
    ContrastiveCorpusSimilarity,
    ContrastiveSimilarity,
    CorpusSimilarity,
    RepresentationSimilarity,
    encode,
    sample_corpus,
    sample_foil,
)
from exaug.training import TrainConfig, Trainer, load_run  # noqa: E402

#: ``--quick``: seconds to a minute; the numbers are meaningless.
QUICK = {"epochs": 1, "train_samples": 256, "eval_samples": 128, "batch_size": 16, "explicands": 3, "corpus_size": 16,
         "foil_size": 64, "rise_masks": 64, "ig_steps": 4}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.zip"


def sem(values: torch.Tensor) -> float:
    """Standard error of the mean."""
    return float(values.std() / values.numel() ** 0.5) if values.numel() > 1 else 0.0


def train_encoder(args: argparse.Namespace, out: Path) -> Path:
    config = TrainConfig(
        method="supcon", dataset="imagefolder-zip", data_root=str(args.data), model="resnet18", width=0.25,
        feat_dim=64, epochs=args.epochs, batch_size=args.batch_size, lr=0.125, temperature=0.1, classifier_lr=0.05,
        train_samples=args.train_samples, eval_samples=args.eval_samples, quiet=True, device="cpu", seed=0,
        out=str(out),
    )
    Trainer(config).fit()
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--run", type=Path, help="reuse this trained run folder instead of training")
    parser.add_argument("--data", type=Path, default=DATA, help="the CIFAR-10 JPEG zip")
    parser.add_argument("--out", type=Path, help="run folder when training (default: runs/cocoa_cifar10[_quick])")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--corpus-class", type=int, default=1, help="CIFAR-10 class index (1 = automobile)")
    parser.add_argument("--explicands", type=int, default=32)
    parser.add_argument("--corpus-size", type=int, default=100)
    parser.add_argument("--foil-size", type=int, default=1500)
    parser.add_argument("--rise-masks", type=int, default=1000)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--ig-reduction", default="sum", choices=("sum", "abs_sum"),
                        help="channel reduction of the IG attributions: the paper averages them (signed, 'sum'); "
                             "'abs_sum' ranks evidence against the target as high as evidence for it")
    parser.add_argument("--steps", type=int, default=50, help="insertion/deletion steps")
    parser.add_argument("--settings", nargs="+", default=["same", "different"], choices=("same", "different"),
                        help="explicands of the corpus class (the paper's Table 1) and/or of the other classes "
                             "(Table 2)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # defaults only: explicit flags still win
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/cocoa_cifar10_quick" if args.quick else "runs/cocoa_cifar10")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    started = time.perf_counter()

    folder = args.run if args.run is not None else train_encoder(args, args.out)
    trained = time.perf_counter()
    run = load_run(folder)
    encoder, classifier = run.model.encoder, run.classifier_model
    train_set, test_set = run.dataset("train"), run.dataset("test")
    c = args.corpus_class
    corpus = sample_corpus(train_set, c, args.corpus_size, seed=1)
    foil = sample_foil(train_set, args.foil_size, seed=2)
    with torch.no_grad():
        corpus_pred = classifier(corpus).argmax(dim=1)
    majority = int(corpus_pred.bincount(minlength=run.num_classes).argmax())
    cocoa = ContrastiveCorpusSimilarity(encoder, corpus, foil)
    explainers: dict[str, Callable[[torch.nn.Module], exaug.Explainer]] = {
        "RISE": lambda m: exaug.create_explainer("rise", m, n_masks=args.rise_masks, grid=4, baseline="blur",
                                                 batch_size=256),
        "IG": lambda m: exaug.create_explainer("integrated_gradients", m, n_steps=args.ig_steps, baseline="blur",
                                               internal_batch_size=256, channel_reduction=args.ig_reduction),
    }
    metrics = [f"{metric}_{mode}" for metric in ("ccs", "majority") for mode in ("insertion", "deletion")]

    def cocoa_score(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return cocoa(images)[:, 0]

    def majority_score(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return classifier(images).softmax(dim=1)[:, majority]

    def run_setting(setting: str, explicands: torch.Tensor) -> dict[str, Any]:
        """Every (attribution, target) pair and random maps on ``explicands``, with paired differences."""
        explicand_reps = encode(encoder, explicands)
        rows_target = torch.arange(explicands.shape[0])
        targets: dict[str, tuple[torch.nn.Module, Any]] = {
            "label-free": (RepresentationSimilarity(encoder, explicand_reps), rows_target),
            "contrastive label-free": (ContrastiveSimilarity(encoder, explicand_reps, foil), rows_target),
            "corpus": (CorpusSimilarity(encoder, corpus), 0),
            "COCOA": (cocoa, 0),
        }
        # RISE costs n_masks forwards per explicand: run it for the paper's headline pair (label-free vs COCOA).
        plan = [("RISE", t) for t in ("label-free", "COCOA")] + [("IG", t) for t in targets]
        per_explicand: dict[str, dict[str, torch.Tensor]] = {}

        def evaluate(name: str, saliency: torch.Tensor) -> dict[str, float]:
            out, aucs = {}, {}
            for metric, score in (("ccs", cocoa_score), ("majority", majority_score)):
                for mode in ("insertion", "deletion"):
                    auc = insertion_deletion(score, explicands, saliency, mode=mode, steps=args.steps,
                                             baseline="blur")
                    aucs[f"{metric}_{mode}"] = auc.auc
                    out[f"{metric}_{mode}"] = float(auc.auc.mean())
                    out[f"{metric}_{mode}_sem"] = sem(auc.auc)
            per_explicand[name] = aucs
            return out

        results: dict[str, dict[str, Any]] = {}
        for attribution, target in plan:
            model, explained = targets[target]
            tic = time.perf_counter()
            saliency = explainers[attribution](model)(explicands, explained)
            name = f"{attribution} / {target}"
            results[name] = {**evaluate(name, saliency), "explain_seconds": time.perf_counter() - tic}
            print(f"[{setting}] {name}: done in {time.perf_counter() - tic:.1f}s", flush=True)
        generator = torch.Generator().manual_seed(4)
        random_maps = torch.rand(explicands.shape[0], 1, *explicands.shape[-2:], generator=generator)
        results["random"] = {**evaluate("random", random_maps), "explain_seconds": 0.0}
        # Same explicands for every method: paired differences are far less noisy than the per-method spreads.
        paired = {}
        for first, second in [("RISE / COCOA", "RISE / label-free"), ("IG / COCOA", "IG / label-free"),
                              ("RISE / COCOA", "random"), ("IG / COCOA", "random")]:
            diff = {m: per_explicand[first][m] - per_explicand[second][m] for m in metrics}
            paired[f"{first} - {second}"] = {**{m: float(d.mean()) for m, d in diff.items()},
                                             **{f"{m}_sem": sem(d) for m, d in diff.items()}}
        return {"results": results, "paired_differences": paired,
                "per_explicand_auc": {n: {m: v.tolist() for m, v in a.items()} for n, a in per_explicand.items()}}

    # "same": held-out images of the corpus class (the paper's Table 1); "different": held-out images of the other
    # classes (Table 2), where label-free targets cannot know what the corpus is about.
    explicand_sets = {"same": lambda: sample_corpus(test_set, c, args.explicands, seed=3),
                      "different": lambda: sample_foil(test_set, args.explicands, seed=3, exclude_class=c)}
    settings = {name: run_setting(name, explicand_sets[name]()) for name in args.settings}

    val = (run.summary or {}).get("best_val_top1", (run.metrics[-1] if run.metrics else {}).get("val_top1"))
    print(f"\nCIFAR-10, corpus class {c}, {args.explicands} explicands per setting, encoder val top-1 {val}, "
          f"corpus-majority class {majority} ({int((corpus_pred == majority).sum())}/{corpus.shape[0]} corpus images)")
    header = ["attribution / target", "CCS ins (↑)", "CCS del (↓)", "majority ins (↑)", "majority del (↓)"]
    for name, setting in settings.items():
        print(f"\n## explicands of the {name} class as the corpus")
        print(table([[method] + [f"{r[m]:.3f} ± {r[m + '_sem']:.3f}" for m in metrics]
                     for method, r in setting["results"].items()], header))
        print("paired differences (mean ± SEM over explicands; insertion: > 0 favours the first, deletion: < 0)")
        print(table([[pair] + [f"{d[m]:+.3f} ± {d[m + '_sem']:.3f}" for m in metrics]
                     for pair, d in setting["paired_differences"].items()], ["difference"] + header[1:]))
    path = save("cocoa_cifar10", {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seeds": {"training": 0, "corpus": 1, "foil": 2, "explicands": 3, "random_maps": 4},
        "run": str(folder), "val_top1": val, "majority_class": majority,
        "corpus_majority_share": float((corpus_pred == majority).float().mean()),
        "train_seconds": trained - started, "total_seconds": time.perf_counter() - started,
        "explicand_settings": settings,
    }, args.quick)
    print(f"saved {path}")
    return settings


if __name__ == "__main__":
    main()
