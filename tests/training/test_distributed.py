"""The trainer under a 2-process gloo group (what torchrun sets up), on the CPU."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from exaug.training import TrainConfig, Trainer
from exaug.training.logger import read_metrics

WORLD = 2
GLOBAL_BATCH = 16


def _config(out: str, batch_size: int) -> TrainConfig:
    return TrainConfig(dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=1,
                       batch_size=batch_size, lr=0.05, train_samples=64, eval_samples=32, method="exconb",
                       exp_start_epoch=0, quiet=True, device="cpu", seed=5, out=out)


def _fixed_batch(trainer: Trainer) -> tuple[torch.Tensor, ...]:
    """A deterministic global batch: standard views of the first images, two different fixed views."""
    dataset = trainer.data.val.dataset
    images = torch.stack([dataset[i][0] for i in range(GLOBAL_BATCH)])
    labels = torch.tensor([dataset[i][1] for i in range(GLOBAL_BATCH)])
    return images, images.flip(-1), images * 0.5, labels


def step_loss(trainer: Trainer, rows: slice) -> torch.Tensor:
    # Eval mode: BatchNorm uses running statistics, so per-rank batch statistics do not enter the comparison
    # (SyncBatchNorm is CUDA-only); what is compared is the sharding, the routing and the gathered loss.
    trainer.model.eval()
    trainer.augment.enabled = True
    standard, view1, view2, labels = _fixed_batch(trainer)
    loss, _ = trainer.contrastive_step_loss(standard[rows], view1[rows], view2[rows], labels[rows])
    return loss.detach()


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    trainer = Trainer(_config(os.path.join(out, "run"), GLOBAL_BATCH // WORLD))
    try:
        assert trainer.ctx.enabled and trainer.ctx.world_size == WORLD
        shard = GLOBAL_BATCH // WORLD
        loss = step_loss(trainer, slice(rank * shard, (rank + 1) * shard))
        torch.save(loss, os.path.join(out, f"loss{rank}.pt"))
        trainer.model.train()
        summary = trainer.fit()
        assert summary["status"] == "finished"
    finally:
        trainer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_epoch_and_step_loss_equal_single_process(tmp_path, monkeypatch):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [0] and rows[0]["val_top1"] >= 0
    assert (tmp_path / "run" / "last.pt").is_file()
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    single = Trainer(_config(str(tmp_path / "single"), GLOBAL_BATCH))
    expected = step_loss(single, slice(0, GLOBAL_BATCH))
    rank_losses = torch.stack([torch.load(tmp_path / f"loss{r}.pt") for r in range(WORLD)])
    # Every rank has the same number of regular anchors, so the mean of the rank losses (what DDP's gradient
    # averaging optimises) is the single-process loss on the global batch.
    assert rank_losses.mean().item() == pytest.approx(expected.item(), rel=1e-5)
