"""gather_distributed on 2 CPU processes (gloo) equals the single-process loss on the concatenated batch."""

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from exaug.losses import ExConBLoss, SupConLoss
from exaug.utils import dist

WORLD = 2


def _cases():
    """name -> (loss, full inputs, per-rank row slices, per-rank loss scale). Deterministic, built on every rank."""
    g = torch.Generator().manual_seed(0)

    def feats(n, v=2):
        return F.normalize(torch.randn(n, v, 6, generator=g, dtype=torch.float64), dim=-1)

    uneven, even = [slice(0, 5), slice(5, 8)], [slice(0, 4), slice(4, 8)]
    # Ranks with different anchor counts: weight each rank's loss by its share so the ranks' mean is the global
    # mean (DDP averages gradients, hence the factor WORLD).
    share = [WORLD * 5 / 8, WORLD * 3 / 8]
    # ExConB: 4 non-background rows on each rank, 1 and 3 background rows.
    bg = torch.tensor([False, False, True, False, False] + [False, True, False, True, False, False, True])
    ex_labels = torch.tensor([0, 1, 9, 2, 0] + [1, 9, 2, 9, 0, 1, 9])
    ex_shards = [slice(0, 5), slice(5, 12)]
    mask = torch.rand(8, 8, generator=g) > 0.5
    return {
        "supcon_labels": (SupConLoss(0.1, gather_distributed=True), (feats(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])),
                          uneven, share),
        "supcon_simclr_one": (SupConLoss(contrast_mode="one", gather_distributed=True), (feats(8, 3),), even, [1, 1]),
        "supcon_mask": (SupConLoss(gather_distributed=True), (feats(8), None, mask), even, [1, 1]),
        "exconb_all": (ExConBLoss(0.1, gather_distributed=True), (feats(12), ex_labels, bg), ex_shards, [1, 1]),
        "exconb_one": (ExConBLoss(gather_distributed=True, background_copies="one", background_weight=0.7),
                       (feats(12), ex_labels, bg), ex_shards, [1, 1]),
    }


def _shard(inputs, rows):
    features, *rest = inputs
    rest = [x if x is None else x[rows] for x in rest]  # a custom mask keeps all (global) columns
    return [features[rows].clone().requires_grad_(), *rest]


def _worker(rank, init_file, out_file):
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, (loss_fn, inputs, shards, scale) in _cases().items():
            local = _shard(inputs, shards[rank])
            loss = loss_fn(*local) * scale[rank]
            loss.backward()
            results[name] = (loss.detach(), local[0].grad)
        # The plain gather: uneven sizes, bool, no grad.
        flags = torch.arange(3 + rank) % 2 == 0
        results["gather"] = dist.gather(flags)
        torch.save(results, f"{out_file}{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


def test_not_distributed_is_identity():
    x = torch.randn(3, 2)
    assert dist.gather(x) is x and dist.world_size() == 1 and dist.rank() == 0 and not dist.is_distributed()
    assert dist.gather_sizes(3) == [3]


@pytest.mark.distributed
def test_gather_distributed_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "rank")), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    expected_flags = torch.cat([torch.arange(3 + r) % 2 == 0 for r in range(WORLD)])
    assert all(torch.equal(res["gather"], expected_flags) for res in ranks)

    for name, (loss_fn, inputs, shards, _) in _cases().items():
        loss_fn.gather_distributed = False
        features = inputs[0].clone().requires_grad_()
        single = loss_fn(features, *inputs[1:])
        single.backward()
        rank_losses = torch.stack([res[name][0] for res in ranks])
        assert rank_losses.mean().item() == pytest.approx(single.item(), abs=1e-6), name
        for r, rows in enumerate(shards):
            torch.testing.assert_close(ranks[r][name][1] / WORLD, features.grad[rows], atol=1e-6, rtol=0, msg=name)
