from __future__ import annotations

import pytest
import torch

from exaug import ExplanationMaskAugment, SaliencyCache, create_explainer

N = 100
# float16 stores values in [0, 1] to within half a unit in the last place of [0.5, 1): 2 ** -12.
FP16_ATOL = 2.0**-12


class CountingExplainer:
    """A callable explainer that records the batch size of every call."""

    def __init__(self, explainer):
        self.explainer = explainer
        self.sizes: list[int] = []

    def __call__(self, images, targets):
        self.sizes.append(images.shape[0])
        return self.explainer(images, targets)


def random_maps(b, size=8, seed=0):
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed))


# -- the cache on its own -------------------------------------------------------------------------------------
def test_stale_put_get_follow_the_epochs():
    cache = SaliencyCache(N, 8, refresh_every=2)
    idx = torch.tensor([3, 50, 99])
    assert cache.stale(idx).all()  # never computed
    cache.put(idx, random_maps(3), torch.tensor([False, True, False]))
    assert cache.epoch_computed[idx].tolist() == [0, 0, 0] and cache.epoch_computed[:3].tolist() == [-1] * 3
    assert not cache.stale(idx).any()
    cache.set_epoch(1)
    assert not cache.stale(idx).any() and cache.stale(torch.tensor([4])).all()
    cache.set_epoch(2)
    assert cache.stale(idx).all()
    cache.put(idx[:1], random_maps(1), torch.tensor([False]))
    assert cache.stale(idx).tolist() == [False, True, True]
    cache.set_epoch(0)  # went back (a new run reusing the cache): maps of a later epoch are stale
    assert cache.stale(idx).tolist() == [True, False, False]


def test_refresh_every_one_recomputes_every_epoch():
    cache = SaliencyCache(N, 8, refresh_every=1)
    idx = torch.arange(5)
    cache.put(idx, random_maps(5), torch.zeros(5, dtype=torch.bool))
    assert not cache.stale(idx).any()
    cache.set_epoch(1)
    assert cache.stale(idx).all()


@pytest.mark.parametrize("dtype, atol", [(torch.float16, FP16_ATOL), (torch.bfloat16, 2.0**-9), (torch.float32, 0.0)])
def test_roundtrip_within_storage_precision(dtype, atol):
    cache = SaliencyCache(N, (8, 6), dtype=dtype)
    maps = torch.rand(4, 1, 8, 6, generator=torch.Generator().manual_seed(1))
    flat = torch.tensor([True, False, True, False])
    idx = torch.tensor([7, 1, 60, 2], dtype=torch.int32)  # any integer dtype
    cache.put(idx, maps, flat)
    got, got_flat = cache.get(idx)
    assert got.dtype == torch.float32 and got.shape == (4, 1, 8, 6) and cache.maps.dtype == dtype
    torch.testing.assert_close(got, maps, rtol=0, atol=atol)
    assert torch.equal(got_flat, flat)
    # exact values survive: 0, 1 and the threshold 0.5
    edges = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 1, 8, 6)
    cache.put(torch.tensor([10, 11, 12]), edges, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(cache.get(torch.tensor([10, 11, 12]))[0], edges)


def test_counters_reset_and_memory():
    cache = SaliencyCache(N, 8, refresh_every=3)
    assert cache.hit_rate == 0.0
    idx = torch.arange(10)
    cache.put(idx, random_maps(10), torch.zeros(10, dtype=torch.bool))
    cache.get(idx[:6])
    assert (cache.hits, cache.misses) == (6, 10) and cache.hit_rate == pytest.approx(6 / 16)
    assert cache.memory_bytes == N * 8 * 8 * 2 + N * 1 + N * 8  # float16 maps, bool flags, int64 epochs
    assert SaliencyCache(N, 8, dtype=torch.float32).memory_bytes == N * 8 * 8 * 4 + N * 9
    cache.set_epoch(4)
    cache.reset()
    assert (cache.hits, cache.misses, cache.epoch) == (0, 0, 4) and cache.stale(idx).all()
    assert len(cache) == N and "refresh_every=3" in repr(cache)


def test_to_moves_the_buffers():
    cache = SaliencyCache(N, 8)
    assert cache.to("meta") is cache and cache.device.type == "meta"
    assert cache.flat.device.type == cache.epoch_computed.device.type == "meta"


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="num_samples"):
        SaliencyCache(0, 8)
    with pytest.raises(ValueError, match="refresh_every"):
        SaliencyCache(N, 8, refresh_every=0)
    for size in (0, (8, 0), (8,), 8.0, (8, True)):
        with pytest.raises(ValueError, match="image_size"):
            SaliencyCache(N, size)
    for dtype in (torch.int64, torch.bool, "float16"):
        with pytest.raises(TypeError, match="dtype"):
            SaliencyCache(N, 8, dtype=dtype)
    cache = SaliencyCache(N, 8)
    with pytest.raises(ValueError, match="epoch"):
        cache.set_epoch(-1)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 100\), got values in \[-1, 5\]"):
        cache.stale(torch.tensor([5, -1]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 100\)"):
        cache.get(torch.tensor([100]))
    with pytest.raises(TypeError, match="indices must hold integer"):
        cache.stale(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"indices must have shape \(B,\)"):
        cache.stale(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"maps must be .* \(2, 1, 8, 8\)"):
        cache.put(torch.tensor([0, 1]), random_maps(2, size=4), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="flat must be a bool tensor"):
        cache.put(torch.tensor([0, 1]), random_maps(2), torch.zeros(2))


# -- ExplanationMaskAugment with a cache ----------------------------------------------------------------------
def assert_same_batch(a, b):
    for field in ("images", "labels", "background", "masked", "saliency", "keep", "correct", "flat"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def indices_of(batch_size, seed=2):
    """Dataset indices of a batch: a shuffled, not contiguous, selection as a loader would give."""
    return torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:batch_size]


@pytest.mark.parametrize("form", ["name", "explainer", "callable"])
def test_first_epoch_equals_the_uncached_augment(form, cnn, batch):
    x, v1, v2, y = batch
    explainer = {"name": "gradcam", "explainer": create_explainer("gradcam", cnn),
                 "callable": lambda im, t: create_explainer("gradcam", cnn)(im, t) * 3 - 1}[form]
    plain = ExplanationMaskAugment(explainer, mode="exconb")(x, (v1, v2), y, cnn)
    cache = SaliencyCache(N, 16, refresh_every=2)
    cached = ExplanationMaskAugment(explainer, mode="exconb", cache=cache)(x, (v1, v2), y, cnn, indices_of(12))
    assert_same_batch(cached, plain)
    assert (cache.hits, cache.misses) == (0, 12)


@pytest.mark.parametrize("target", ["label", "predicted"])
def test_maps_are_reused_until_the_refresh_epoch(target, cnn, batch):
    x, v1, v2, y = batch
    idx = indices_of(12)
    counting = CountingExplainer(create_explainer("gradcam", cnn))
    cache = SaliencyCache(N, 16, refresh_every=2)
    aug = ExplanationMaskAugment(counting, mode="exconb", target=target, cache=cache)
    first = aug(x, (v1, v2), y, cnn, idx)
    assert counting.sizes == [12]

    cache.set_epoch(1)
    second = aug(x, (v1, v2), y, cnn, idx)
    assert counting.sizes == [12], "epoch 1 must not call the explainer"
    assert (cache.hits, cache.misses) == (12, 12)
    torch.testing.assert_close(second.saliency, first.saliency, rtol=0, atol=FP16_ATOL)
    assert torch.equal(second.flat, first.flat)
    # float16 rounding can only flip pixels right at the threshold
    clear = (first.saliency - aug.threshold).abs() > 1e-3
    assert torch.equal(second.keep[clear], first.keep[clear])

    cache.set_epoch(2)
    third = aug(x, (v1, v2), y, cnn, idx)
    assert counting.sizes == [12, 12]
    assert_same_batch(third, first)


def test_mixed_batch_explains_only_the_stale_rows(cnn, batch):
    x, v1, v2, y = batch
    idx = indices_of(12)
    counting = CountingExplainer(create_explainer("gradcam", cnn))
    cache = SaliencyCache(N, 16, refresh_every=2)
    aug = ExplanationMaskAugment(counting, mode="excon", cache=cache)
    seen = torch.tensor([0, 2, 3, 7, 11])
    aug(x[seen], (v1[seen], v2[seen]), y[seen], cnn, idx[seen])  # epoch 0: five images
    cache.set_epoch(1)
    out = aug(x, (v1, v2), y, cnn, idx)
    assert counting.sizes == [5, 7], "only the 7 images never explained are explained at epoch 1"
    assert (cache.hits, cache.misses) == (5, 12) and not cache.stale(idx).any()
    reference = ExplanationMaskAugment("gradcam", mode="excon")(x, (v1, v2), y, cnn)
    stale = torch.ones(12, dtype=torch.bool)
    stale[seen] = False
    # fresh rows in float32 (up to the batch size of the convolutions), cached rows to float16 precision
    torch.testing.assert_close(out.saliency[stale], reference.saliency[stale], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.saliency[seen], reference.saliency[seen], rtol=0, atol=FP16_ATOL)
    assert torch.equal(out.flat, reference.flat)
    assert cache.epoch_computed[idx[seen]].tolist() == [0] * 5 and cache.epoch_computed[idx[stale]].tolist() == [1] * 7


def test_flat_maps_stay_flat_from_the_cache(make_cnn):
    model = make_cnn(forced_class=0)
    x = torch.randn(4, 3, 16, 16)
    y = torch.zeros(4, dtype=torch.long)
    cache = SaliencyCache(N, 16, refresh_every=3)
    aug = ExplanationMaskAugment(lambda im, t: torch.ones(im.shape[0], 1, 16, 16), cache=cache)
    aug(x, (x, x), y, model, torch.arange(4))
    cache.set_epoch(1)
    out = aug(x, (x, x), y, model, torch.arange(4))
    assert cache.hits == 4 and out.flat.all() and not out.keep.any()


def test_indices_are_required_with_a_cache_and_ignored_without(cnn, batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", cache=SaliencyCache(N, 16))
    with pytest.raises(ValueError, match="indices .* are required when a SaliencyCache is set"):
        aug(x, (v1, v2), y, cnn)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 100\)"):
        aug(x, (v1, v2), y, cnn, torch.arange(95, 107))
    with pytest.raises(ValueError, match=r"indices must have shape \(12,\)"):
        aug(x, (v1, v2), y, cnn, torch.arange(11))
    with pytest.raises(TypeError, match="indices must hold integer"):
        aug(x, (v1, v2), y, cnn, torch.arange(12.0))
    with pytest.raises(ValueError, match="the cache holds 8x8 maps, the originals are 16x16"):
        ExplanationMaskAugment("gradcam", cache=SaliencyCache(N, 8))(x, (v1, v2), y, cnn, torch.arange(12))
    with pytest.raises(TypeError, match="cache must be a SaliencyCache"):
        ExplanationMaskAugment("gradcam", cache={})
    plain = ExplanationMaskAugment("gradcam")
    assert_same_batch(plain(x, (v1, v2), y, cnn, torch.arange(95, 107)), plain(x, (v1, v2), y, cnn))


def test_labels_are_still_range_checked_when_no_row_is_explained(cnn, batch):
    x, v1, v2, y = batch
    cache = SaliencyCache(N, 16, refresh_every=2)
    aug = ExplanationMaskAugment("gradcam", cache=cache)
    aug(x, (v1, v2), y, cnn, torch.arange(12))
    cache.set_epoch(1)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        aug(x, (v1, v2), y + 10, cnn, torch.arange(12))


# -- checkpoints: state_dict / load_state_dict --------------------------------------------------------------------
def roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load, as a checkpoint file would be."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_restores_maps_staleness_and_counters():
    cache = SaliencyCache(N, (8, 6), refresh_every=3)
    g = torch.Generator().manual_seed(3)
    for epoch, idx in enumerate((torch.arange(0, 40), torch.arange(30, 70), torch.arange(60, 80))):
        cache.set_epoch(epoch)
        cache.put(idx, torch.rand(len(idx), 1, 8, 6, generator=g), torch.rand(len(idx), generator=g) < 0.2)
    cache.get(torch.arange(10))
    state = roundtrip(cache.state_dict())
    assert set(state) == {"maps", "flat", "epoch_computed", "_extra_state"}
    assert state["_extra_state"] == {"epoch": 2, "hits": 10, "misses": 100}

    loaded = SaliencyCache(N, (8, 6), refresh_every=3)
    loaded.load_state_dict(state)
    assert (loaded.epoch, loaded.hits, loaded.misses) == (2, 10, 100)
    everything = torch.arange(N)
    # The stored stamps make a mixed pattern (a fresh cache would say "all stale"): the test is not trivial.
    assert 0 < int(loaded.stale(everything).sum()) < N
    for epoch in range(2, 7):
        cache.set_epoch(epoch)
        loaded.set_epoch(epoch)
        assert torch.equal(loaded.stale(everything), cache.stale(everything)), epoch
    maps, flat = loaded.get(everything)
    ref_maps, ref_flat = cache.get(everything)
    assert torch.equal(maps, ref_maps) and torch.equal(flat, ref_flat)  # bit-identical (float16 as stored)
    assert torch.equal(loaded.epoch_computed, cache.epoch_computed)


def test_state_dict_of_another_size_is_refused():
    state = SaliencyCache(N, 8).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch for maps"):
        SaliencyCache(N, 16).load_state_dict(state)
    with pytest.raises(RuntimeError, match="size mismatch for flat"):
        SaliencyCache(N + 1, 8).load_state_dict(state)
    with pytest.raises(ValueError, match="extra state"):
        SaliencyCache(N, 8).load_state_dict({**state, "_extra_state": {"epoch": 1}})


class DriftingModel:
    """The model of each epoch: fixed weights plus a drift proportional to the epoch, as training would move it."""

    def __init__(self, make_cnn):
        torch.manual_seed(0)
        self.base = make_cnn()
        g = torch.Generator().manual_seed(9)
        self.drift = [torch.randn(p.shape, generator=g) * 0.3 for p in self.base.parameters()]

    def at(self, epoch: int):
        model = type(self.base)()
        model.load_state_dict(self.base.state_dict())
        with torch.no_grad():
            for p, d in zip(model.parameters(), self.drift):
                p.add_(d * epoch)
        return model


def run_epochs(cache, drifting, epochs, images, labels):
    """Each epoch explains a shuffled subset of 18 of the 24 images in two batches; returns the keep-masks."""
    aug = ExplanationMaskAugment("gradcam", mode="exconb", cache=cache)
    keeps = {}
    for epoch in epochs:
        cache.set_epoch(epoch)
        model = drifting.at(epoch)
        order = torch.randperm(24, generator=torch.Generator().manual_seed(100 + epoch))[:18]
        for half in (order[:9], order[9:]):
            out = aug(images[half], (images[half], images[half]), labels[half], model, half)
            for i, index in enumerate(half.tolist()):
                keeps[(epoch, index)] = out.keep[i]
    return keeps


def test_resumed_epochs_give_the_same_keep_masks_as_an_uninterrupted_run(make_cnn):
    g = torch.Generator().manual_seed(4)
    images, labels = torch.randn(24, 3, 16, 16, generator=g), torch.randint(0, 5, (24,), generator=g)
    drifting = DriftingModel(make_cnn)

    uninterrupted = run_epochs(SaliencyCache(24, 16, refresh_every=3), drifting, range(5), images, labels)

    first = SaliencyCache(24, 16, refresh_every=3)
    before = run_epochs(first, drifting, range(2), images, labels)
    checkpoint = roundtrip(first.state_dict())
    resumed_cache = SaliencyCache(24, 16, refresh_every=3)
    resumed_cache.load_state_dict(checkpoint)
    after = run_epochs(resumed_cache, drifting, range(2, 5), images, labels)
    resumed = {**before, **after}
    assert resumed.keys() == uninterrupted.keys()
    for key, keep in uninterrupted.items():
        assert torch.equal(resumed[key], keep), key

    # Control: resuming without the cache state recomputes the maps with the drifted model and differs.
    cold = run_epochs(SaliencyCache(24, 16, refresh_every=3), drifting, range(2, 5), images, labels)
    assert any(not torch.equal(cold[key], uninterrupted[key]) for key in cold)


def test_augment_state_dict_holds_the_cache(cnn, batch):
    x, v1, v2, y = batch
    aug = ExplanationMaskAugment("gradcam", cache=SaliencyCache(N, 16))
    aug(x, (v1, v2), y, cnn, indices_of(12))
    other = ExplanationMaskAugment("gradcam", cache=SaliencyCache(N, 16))
    other.load_state_dict(roundtrip(aug.state_dict()))
    assert torch.equal(other.cache.maps, aug.cache.maps) and other.cache.misses == 12
    assert not other.cache.stale(indices_of(12)).any()


# -- compact storage: native maps, uint8 / float16, upsampled on read -----------------------------------------------
@pytest.fixture(scope="module")
def cifar_resnet():
    """A narrow CIFAR ResNet-18 classifier (images -> logits): layer2 gives 16x16 maps of 32x32 images."""
    from exaug.models import Classifier, LinearClassifier, create_model

    torch.manual_seed(0)
    encoder = create_model("resnet18", 10, width=0.125).encoder
    with torch.no_grad():
        dim = encoder(torch.zeros(1, 3, 32, 32)).shape[1]
    return Classifier(encoder, LinearClassifier(dim, 10)).eval()


@pytest.fixture(scope="module")
def cifar_batch():
    g = torch.Generator().manual_seed(5)
    return torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def two_epochs(explainer, model, images, labels, cache, options=None):
    """Epoch 0 explains every image; epoch 1 serves them all from ``cache`` in another order and grouping."""
    aug = ExplanationMaskAugment(explainer, mode="exconb", explainer_options=options, cache=cache)
    idx = torch.arange(images.shape[0])
    aug(images, (images, images), labels, model, idx)
    cache.set_epoch(1)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(6))
    served = {}
    for part in (order[:5], order[5:]):  # other batch sizes than the explained one
        out = aug(images[part], (images[part], images[part]), labels[part], model, part)
        for i, index in enumerate(part.tolist()):
            served[index] = (out.saliency[i], out.keep[i], out.flat[i])
    assert cache.hits == images.shape[0]
    return [torch.stack([served[i][j] for i in range(images.shape[0])]) for j in range(3)]


@pytest.mark.parametrize("name, options, map_size", [
    ("gradcam", {"target_layer": "encoder.layer2"}, (16, 16)),
    ("saliency", None, (32, 32)),  # a pixel-resolution explainer: stores the normalised map
])
def test_native_float32_cache_serves_the_fresh_maps_bit_for_bit(cifar_resnet, cifar_batch, name, options, map_size):
    images, labels = cifar_batch
    fresh = ExplanationMaskAugment(name, mode="exconb", explainer_options=options)(images, (images, images), labels,
                                                                                  cifar_resnet)
    cache = SaliencyCache(N, 32, dtype=torch.float32, map_size="native")
    saliency, keep, flat = two_epochs(name, cifar_resnet, images, labels, cache, options)
    assert cache.map_size == map_size and cache.upsamples == (map_size != (32, 32))
    assert torch.equal(saliency, fresh.saliency) and torch.equal(keep, fresh.keep) and torch.equal(flat, fresh.flat)
    assert 0 < int(keep.sum()) < keep.numel()  # the masks are not trivially empty or full


def test_native_maps_take_a_quarter_of_the_pixel_memory(cifar_resnet, cifar_batch):
    images, labels = cifar_batch
    options = {"target_layer": "encoder.layer2"}
    sizes = {}
    for dtype in (torch.float32, torch.float16, torch.uint8):
        for map_size in (None, "native"):
            cache = SaliencyCache(N, 32, dtype=dtype, map_size=map_size)
            two_epochs("gradcam", cifar_resnet, images, labels, cache, options)
            sizes[dtype, map_size] = cache.memory_bytes / N
    assert sizes[torch.float32, None] == 32 * 32 * 4 + 9 and sizes[torch.float32, "native"] == 16 * 16 * 4 + 9
    assert sizes[torch.uint8, "native"] == 16 * 16 + 9 and sizes[torch.float16, "native"] == 16 * 16 * 2 + 9


# Half the storage step of a value in [0, 1]: uint8 levels of 1/255, float16 / bfloat16 ulps of [0.5, 1).
STEP = {torch.uint8: 0.5 / 255, torch.float16: 2.0**-12, torch.bfloat16: 2.0**-9}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16])
def test_rounded_native_maps_stay_within_the_stated_tolerance(cifar_resnet, cifar_batch, dtype):
    """Served - fresh <= 4 e / r per sample (e: the storage step, r: the range the upsampled native map keeps),
    and keep-masks differ only at pixels that close to the threshold."""
    from exaug.explainers.base import normalize_saliency, upsample_bilinear

    images, labels = cifar_batch
    explainer = create_explainer("gradcam", cifar_resnet, target_layer="encoder.layer2")
    fresh = explainer.explain(images, labels)
    cache = SaliencyCache(N, 32, dtype=dtype, map_size="native")
    saliency, keep, flat = two_epochs(explainer, cifar_resnet, images, labels, cache)
    assert cache.map_size == (16, 16) and torch.equal(flat, fresh.flat)
    native = normalize_saliency(fresh.raw.float())[0]
    kept_range = upsample_bilinear(native, (32, 32)).flatten(1).aminmax(dim=1)
    bound = (4 * STEP[dtype] / (kept_range.max - kept_range.min)).view(-1, 1, 1, 1) + 1e-6
    error = (saliency - fresh.saliency).abs()
    assert (error <= bound).all() and error.max() > 0  # rounded, and within the bound
    fresh_keep = fresh.saliency > 0.5
    flipped = keep != fresh_keep
    assert ((fresh.saliency - 0.5).abs()[flipped] <= bound.expand_as(error)[flipped]).all()
    assert flipped.float().mean() < 0.01  # measured: see benchmarks/cache_memory.py for the fractions


def test_native_cache_checkpoints_and_refuses_another_dtype(cifar_resnet, cifar_batch):
    images, labels = cifar_batch
    cache = SaliencyCache(N, 32, dtype=torch.uint8, map_size="native")
    two_epochs("gradcam", cifar_resnet, images, labels, cache, {"target_layer": "encoder.layer2"})
    state = roundtrip(cache.state_dict())
    loaded = SaliencyCache(N, 32, dtype=torch.uint8, map_size="native")
    assert loaded.map_size is None and loaded.memory_bytes == N * 9
    loaded.load_state_dict(state)
    assert loaded.map_size == (16, 16) and torch.equal(loaded.maps, cache.maps)
    everything = torch.arange(16)
    assert all(torch.equal(a, b) for a, b in zip(loaded.get(everything), cache.get(everything)))
    with pytest.raises(RuntimeError, match="stores torch.uint8 maps, this one torch.float16"):
        SaliencyCache(N, 32, map_size="native").load_state_dict(state)
    with pytest.raises(RuntimeError, match="size mismatch for maps"):
        SaliencyCache(N, 32, dtype=torch.uint8).load_state_dict(state)


def test_native_cache_errors_name_the_problem(cnn, batch):
    x, v1, v2, y = batch
    with pytest.raises(ValueError, match="map_size"):
        SaliencyCache(N, 16, map_size="pixels")
    cache = SaliencyCache(N, 16, map_size=4)  # the cnn's gradcam layer is 8x8
    with pytest.raises(ValueError, match="stores 4x4 native maps, the explainer returned 8x8"):
        ExplanationMaskAugment("gradcam", cache=cache)(x, (v1, v2), y, cnn, torch.arange(12))
    with pytest.raises(ValueError, match="explainer gave none"):
        ExplanationMaskAugment(lambda im, t: im.sum(1, keepdim=True), cache=cache)(x, (v1, v2), y, cnn,
                                                                                   torch.arange(12))
    # A callable has no native map: a "native" cache stores its normalised pixel map.
    callable_cache = SaliencyCache(N, 16, map_size="native")
    ExplanationMaskAugment(lambda im, t: im.sum(1, keepdim=True), cache=callable_cache)(x, (v1, v2), y, cnn,
                                                                                        torch.arange(12))
    assert callable_cache.map_size == (16, 16) and not callable_cache.upsamples
