"""Helper of ``test_lightning.py`` (run as a script): one epoch of ExConB under 2-process DDP on the CPU.

Each rank writes ``<out>/rank<k>.json``: whether the loss gathers across ranks, and its parameters after training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from exaug.data import SyntheticShapes
from exaug.integrations.lightning import ExConModule
from exaug.models import build_networks
from exaug.transforms import ExConTransform, standard_view, supcon_random_view


class Record(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_end(self, trainer: pl.Trainer, module: ExConModule) -> None:
        params = torch.cat([p.detach().flatten() for p in module.parameters()])
        Path(self.out, f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "gather": module.contrastive_loss.gather_distributed, "world_size": trainer.world_size,
            "params": params.tolist()}))


def main(out: str) -> None:
    torch.manual_seed(0)
    mean, std = (0.5,) * 3, (0.25,) * 3
    views = ExConTransform(supcon_random_view(16, mean, std), standard_view(16, mean, std))
    train = DataLoader(SyntheticShapes("train", 32, image_size=16, transform=views), batch_size=8, drop_last=True)
    model, classifier = build_networks("resnet18", num_classes=10, image_size=16, width=0.0625, feat_dim=8)
    module = ExConModule(model, classifier, "exconb", lr=0.05, explainer_options={"target_layer": "encoder.layer2"})
    fit = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn_find_unused_parameters_true",
                     logger=False, callbacks=[Record(out)], enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, limit_train_batches=2)
    fit.fit(module, train)


if __name__ == "__main__":
    main(sys.argv[1])
