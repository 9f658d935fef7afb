"""Content Heatmap against a naive loop and analytic cases."""

from __future__ import annotations

import pytest
import torch

from exaug.metrics import ContentHeatmap, boxes_to_mask, content_heatmap


def naive_content_heatmap(saliency, mask):
    out = []
    for s, m in zip(saliency, mask):
        s, m = s.flatten().tolist(), m.flatten().tolist()
        total = sum(s)
        out.append(sum(v for v, inside in zip(s, m) if inside) / total)
    return torch.tensor(out)


def test_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    saliency = torch.rand(5, 1, 12, 12, generator=g)
    mask = torch.rand(5, 1, 12, 12, generator=g) > 0.6
    torch.testing.assert_close(content_heatmap(saliency, mask), naive_content_heatmap(saliency, mask))


def test_perfect_saliency_scores_one_and_outside_scores_zero():
    mask = torch.zeros(3, 1, 10, 10, dtype=torch.bool)
    mask[:, :, 2:6, 3:8] = True
    torch.testing.assert_close(content_heatmap(mask.float() * 0.7, mask), torch.ones(3))
    torch.testing.assert_close(content_heatmap((~mask).float(), mask), torch.zeros(3))


def test_boxes_equal_their_masks():
    boxes = torch.tensor([[3.0, 2.0, 8.0, 6.0], [0.0, 0.0, 10.0, 10.0], [5.2, 5.2, 5.8, 5.8]])
    mask = boxes_to_mask(boxes, 10, 10)
    assert mask[0, 0, 2:6, 3:8].all() and mask[0].sum() == 20  # rows 2..5, columns 3..7
    assert mask[1].all() and mask[2].sum() == 1  # a box around one pixel centre (5.5, 5.5)
    saliency = torch.rand(3, 1, 10, 10)
    torch.testing.assert_close(content_heatmap(saliency, boxes=boxes), content_heatmap(saliency, mask))


def test_zero_map_scores_area_fraction_not_nan():
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    out = content_heatmap(torch.zeros(2, 1, 4, 4), mask)
    torch.testing.assert_close(out, torch.full((2,), 0.5))


def test_streaming_and_errors():
    g = torch.Generator().manual_seed(1)
    saliency, mask = torch.rand(8, 1, 6, 6, generator=g), torch.rand(8, 1, 6, 6, generator=g) > 0.5
    metric = ContentHeatmap()
    metric.update(saliency[:3], mask[:3])
    metric.update(saliency[3:], mask[3:])
    assert metric.compute() == pytest.approx(float(content_heatmap(saliency, mask).mean()))
    with pytest.raises(ValueError, match="exactly one"):
        content_heatmap(saliency, mask, boxes=torch.zeros(8, 4))
    with pytest.raises(ValueError, match="empty"):
        content_heatmap(torch.zeros(0, 1, 6, 6), torch.zeros(0, 1, 6, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        content_heatmap(saliency, mask.float())
    with pytest.raises(ValueError, match="non-negative"):
        content_heatmap(-saliency, mask)
    metric.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
