"""COCOA: explain what makes images similar to a corpus class and dissimilar to a foil, without labels.

Trains a small SupCon encoder on built-in synthetic shapes (CPU, no download), then explains held-out images of
one class with the contrastive corpus similarity (COCOA) and with the label-free target, using RISE and
Integrated Gradients, and compares insertion / deletion AUCs of the contrastive corpus similarity:

    python examples/04_cocoa.py                      # about a minute on a CPU
    python examples/04_cocoa.py --epochs 1 --samples 64 --masks 64 --explicands 2   # seconds

With ``--out DIR`` the maps are also written as overlay PNGs (like ``exaug explain``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import exaug
from exaug.metrics.insertion_deletion import insertion_deletion
from exaug.targets import ContrastiveCorpusSimilarity, RepresentationSimilarity, sample_corpus, sample_foil
from exaug.training import TrainConfig, Trainer, load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512, help="training images")
    parser.add_argument("--masks", type=int, default=1000, help="RISE masks")
    parser.add_argument("--explicands", type=int, default=6)
    parser.add_argument("--corpus-class", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write overlay PNGs here")
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(method="supcon", dataset="synthetic", model="resnet18", width=0.125, feat_dim=32,
                             epochs=args.epochs, batch_size=64, lr=0.1, train_samples=args.samples,
                             eval_samples=64, quiet=True, device="cpu", out=folder)
        Trainer(config).fit()                                   # prints "epoch 1/..." lines
        run = load_run(folder)
    encoder = run.model.encoder                                 # images -> representations (no classifier needed)
    train, test = run.dataset("train"), run.dataset("test")

    # The explanation target: similarity to the corpus class minus similarity to random foil images.
    corpus = sample_corpus(train, args.corpus_class, n=min(100, args.samples // 20), seed=1)
    foil = sample_foil(train, n=min(1500, args.samples // 2), seed=2)
    cocoa = ContrastiveCorpusSimilarity(encoder, corpus, foil)                 # (N, 1) -> explain target 0
    explicands = sample_corpus(test, args.corpus_class, n=args.explicands, seed=3)
    label_free = RepresentationSimilarity.from_images(encoder, explicands)   # (N, B) -> explain arange(B)
    own = torch.arange(explicands.shape[0])

    rise = dict(n_masks=args.masks, grid=4, baseline="blur")
    maps = {
        "COCOA + RISE": exaug.create_explainer("rise", cocoa, **rise)(explicands, 0),
        "label-free + RISE": exaug.create_explainer("rise", label_free, **rise)(explicands, own),
        "COCOA + IG": exaug.create_explainer("integrated_gradients", cocoa, n_steps=16, baseline="blur")(
            explicands, 0),
        "random": torch.rand(explicands.shape[0], 1, *explicands.shape[-2:]),
    }

    def score(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return cocoa(images)[:, 0]

    print(f"contrastive corpus similarity, corpus class {args.corpus_class}, {explicands.shape[0]} explicands")
    print(f"{'method':<20} insertion (higher=better)  deletion (lower=better)")
    for name, saliency in maps.items():
        ins = insertion_deletion(score, explicands, saliency, mode="insertion", steps=50).auc.mean()
        dele = insertion_deletion(score, explicands, saliency, mode="deletion", steps=50).auc.mean()
        print(f"{name:<20} {ins.item():>9.3f}                  {dele.item():>8.3f}")

    if args.out is not None:
        from exaug.data import dataset_stats
        from exaug.cli.explain import save_overlays

        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in dataset_stats("synthetic"))
        display = (explicands * std + mean).clamp(0, 1)
        names = [f"explicand{i}" for i in range(explicands.shape[0])]
        paths = save_overlays(display, maps["COCOA + RISE"], args.out, names, ["COCOA"] * len(names), "rise")
        print(f"wrote {len(paths)} PNGs to {args.out}")


if __name__ == "__main__":
    main()
