"""The trainer's saliency cache settings: native resolution, storage dtype, host placement, threads."""

from __future__ import annotations

import pytest
import torch

from exaug.training import Trainer


@pytest.mark.parametrize("dtype, device", [("float32", "train"), ("uint8", "cpu"), ("float16", "train")])
def test_cache_is_native_sized_with_the_configured_dtype(tiny_config, dtype, device):
    trainer = Trainer(tiny_config(method="excon", epochs=2, exp_start_epoch=0, saliency_refresh_epochs=2,
                                  saliency_cache_dtype=dtype, saliency_cache_device=device))
    cache = trainer.saliency_cache
    # resnet18 at 32 px explains encoder.layer2.1.conv2: 16x16 maps, a quarter of the pixels.
    assert cache.map_size == (16, 16) and cache.dtype == getattr(torch, dtype) and cache.device.type == "cpu"
    size = cache.memory_bytes
    assert size == trainer.data.train_size * (16 * 16 * cache.maps.element_size() + 9)
    assert trainer.fit()["status"] == "finished"
    assert cache.memory_bytes == size and cache.hits == trainer.data.train_size  # epoch 1 served every map


def test_threads_setting_reaches_torch(tiny_config):
    before = torch.get_num_threads()
    try:
        Trainer(tiny_config(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
