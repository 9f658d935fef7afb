"""ExConB with PyTorch Lightning: exaug's LightningModule, a CSV log and saliency grids every epoch.

Runs on the CPU in well under a minute on built-in synthetic data (no download); needs the ``lightning`` extra:

    pip install "exaug[lightning]"
    python examples/05_lightning.py --epochs 2

Metrics go to ``<out>/lightning/version_0/metrics.csv``, the saliency grids (originals, saliency overlays, masked
views framed green when still classified correctly, red when they become ExConB background rows) to
``<out>/lightning/version_0/saliency/``. On several GPUs pass ``--devices 4``: the loss then gathers the embeddings
of every rank.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from exaug.data import SyntheticShapes
from exaug.integrations.lightning import ExConModule, SaliencyGridCallback
from exaug.models import build_networks
from exaug.transforms import ExConTransform, standard_view, supcon_random_view


class PrintEpoch(pl.Callback):
    """One line per epoch (Lightning's progress bar is off)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        names = {"encoder_loss": "contrastive loss", "classifier_loss": "classifier loss", "val_top1": "val top-1",
                 "masked_correct": "masks correct", "background_per_batch": "background rows"}
        shown = ", ".join(f"{text} {m[key]:.3f}" for key, text in names.items() if key in m)
        print(f"epoch {trainer.current_epoch + 1}: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512, help="training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    parser.add_argument("--devices", default="1", help="number of devices (DDP when more than one)")
    parser.add_argument("--out", default="lightning_runs", help="log folder")
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    views = ExConTransform(supcon_random_view(32, mean, std), standard_view(32, mean, std))  # standard + 2 random
    train = SyntheticShapes("train", args.samples, transform=views)
    val = SyntheticShapes("test", max(args.samples // 4, args.batch_size), transform=standard_view(32, mean, std))
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val, batch_size=args.batch_size)

    model, classifier = build_networks("resnet18", num_classes=train.num_classes, image_size=32, width=0.125,
                                       feat_dim=64)
    module = ExConModule(model, classifier, "exconb", lr=0.1, exp_start_epoch=1,
                         explainer_options={"target_layer": "encoder.layer2"})
    devices = int(args.devices)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator=args.accelerator, devices=devices,
        # Two backward passes per batch (encoder, then classifier) each use part of the parameters.
        strategy="ddp_find_unused_parameters_true" if devices > 1 else "auto",
        logger=pl.loggers.CSVLogger(args.out, name="lightning"),
        callbacks=[SaliencyGridCallback(every_n_epochs=1, mean=mean, std=std), PrintEpoch()],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0, log_every_n_steps=1,
    )
    trainer.fit(module, train_loader, val_loader)
    if trainer.is_global_zero:
        print(f"logs and saliency grids in {trainer.log_dir}")


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
