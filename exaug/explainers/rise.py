"""Random-mask perturbation backends: RISE (Petsiuk et al. 2018) and RELAX (Wickstrøm et al. 2022).

Both draw ``n_masks`` smooth random masks, evaluate the model on every explained image blended with its
baseline through every mask, ``x_i = baseline + M_i * (x - baseline)``, and average a per-mask score ``s_i``
with the masks as weights:

* ``rise``: ``s_i`` is the softmax probability of the target class (or, for an explanation-target module from
  :mod:`exaug.targets`, its raw scalar output), and the map is ``sum_i s_i M_i / sum_i M_i``. The paper's
  estimator divides by ``n * p`` instead (``normalization="p"``); both estimate ``E[s | M(pixel) = 1]``, but
  dividing by the realised coverage ``sum_i M_i`` removes the Monte-Carlo imprint of uneven mask coverage (a
  model that ignores its input then gives an exactly flat map instead of the coverage pattern).
* ``relax``: the model is an *encoder*; its ``(B, D)`` output is treated as a representation (not as logits) and
  ``s_i`` is the cosine similarity between the representation of the masked image and that of the unmasked
  image. The map is the weighted mean ``sum_i s_i M_i / sum_i M_i`` (RELAX's importance) and
  :meth:`RELAXExplainer.importance_and_uncertainty` also returns the weighted variance (RELAX's uncertainty).
  ``targets`` do not change the map; they are only range-checked against ``D`` and reported, like every backend.

Masks (RISE): a ``grid x grid`` binary grid with keep probability ``p``, upsampled bilinearly to
``(grid + 1) * cell`` with ``cell = ceil(side / grid)``, then cropped at a random shift in ``[0, cell)`` per axis.
They come from a private generator seeded with ``seed`` on every call (the global RNG is never advanced, and the
same images always get the same map), or from the caller's ``generator`` (advanced on every call: a reproducible
stream of mask sets). The same masks are used for every image of a batch; masked images are
evaluated ``batch_size`` at a time, so memory is bounded whatever ``n_masks`` and ``B``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_images, positive_int, probability
from ..utils.images import check_baseline, make_baseline
from ..utils.isolation import isolated
from .base import Explainer, check_finite_images
from .randomness import check_generator, check_seed
from .registry import register_explainer

__all__ = ["MaskPlan", "plan_masks", "render_masks", "rise_masks", "RISEExplainer", "RELAXExplainer", "RelaxResult"]

NORMALIZATIONS: tuple[str, ...] = ("coverage", "p")
SCORES: tuple[str, ...] = ("auto", "softmax", "raw")


class MaskPlan(NamedTuple):
    """The random draws behind a set of RISE masks (cheap: ``n * grid^2`` values on the CPU).

    Attributes:
        grids: ``(n, 1, grid, grid)`` float 0/1 keep grids.
        shifts: ``(n, 2)`` int64 crop offsets ``(dy, dx)`` into the upsampled grid.
        cell: ``(cell_h, cell_w)`` pixels per grid cell.
        size: ``(H, W)`` of the masks.
    """

    grids: Tensor
    shifts: Tensor
    cell: tuple[int, int]
    size: tuple[int, int]


def plan_masks(
    n_masks: int, size: tuple[int, int], grid: int = 7, p: float = 0.5, seed: int = 0,
    generator: torch.Generator | None = None,
) -> MaskPlan:
    """Draw the grids and shifts of ``n_masks`` masks from a private generator seeded with ``seed``, or from
    ``generator`` (advancing it; ``seed`` is then unused). The global RNGs are never touched."""
    n_masks, grid = positive_int("n_masks", n_masks), positive_int("grid", grid)
    p = probability("p", p)
    h, w = size
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    if check_generator(generator) is None:
        generator = torch.Generator().manual_seed(int(seed))
    on = generator.device  # drawn where the generator lives, then kept on the CPU (the plan is small)
    grids = (torch.rand(n_masks, 1, grid, grid, generator=generator, device=on) < p).float().cpu()
    shifts = torch.stack(
        [torch.randint(0, cell[0], (n_masks,), generator=generator, device=on),
         torch.randint(0, cell[1], (n_masks,), generator=generator, device=on)],
        dim=1,
    ).cpu()
    return MaskPlan(grids, shifts, cell, (h, w))


def render_masks(
    plan: MaskPlan, start: int = 0, stop: int | None = None, device: Any = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Masks ``start:stop`` of ``plan`` as ``(m, 1, H, W)`` soft masks in ``[0, 1]`` on ``device``."""
    grids = plan.grids[start:stop].to(device=device, dtype=dtype)
    shifts = plan.shifts[start:stop].to(device=device)
    m, grid = grids.shape[0], grids.shape[-1]
    (ch, cw), (h, w) = plan.cell, plan.size
    up = F.interpolate(grids, size=((grid + 1) * ch, (grid + 1) * cw), mode="bilinear", align_corners=False)
    rows = shifts[:, :1] + torch.arange(h, device=up.device)  # (m, H)
    cols = shifts[:, 1:] + torch.arange(w, device=up.device)  # (m, W)
    index = torch.arange(m, device=up.device).view(m, 1, 1)
    # Clamped: bilinear weights can round a 0/1 grid to 1 + 1 ulp.
    return up[index, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1).clamp_(0, 1)


def rise_masks(
    n_masks: int, size: tuple[int, int], grid: int = 7, p: float = 0.5, seed: int = 0, device: Any = None
) -> Tensor:
    """All ``(n_masks, 1, H, W)`` masks the explainers draw for ``size`` and ``seed`` (for tests and plots)."""
    return render_masks(plan_masks(n_masks, size, grid, p, seed), device=device)


class RelaxResult(NamedTuple):
    """Raw RELAX maps (not normalised).

    Attributes:
        importance: ``(B, 1, H, W)`` mask-weighted mean similarity.
        uncertainty: ``(B, 1, H, W)`` mask-weighted variance of the similarity.
    """

    importance: Tensor
    uncertainty: Tensor


def _at_least_float32(x: Tensor) -> Tensor:
    """Half-precision outputs are upcast for the softmax / similarity; float64 models keep their precision."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# (masked images (N, C, H, W), rows (N,) index of the explained image) -> scores (N,)
_ScoreFn = Callable[[Tensor, Tensor], Tensor]


class _RandomMaskExplainer(Explainer):
    """Shared mask sampling and score accumulation of RISE and RELAX (not registered itself).

    Args:
        model: maps images to ``(B, K)`` outputs.
        n_masks: number of random masks (cost: ``B * n_masks`` forward passes, no backward).
        grid: side of the coarse binary grid (the paper: 7 at 224 px, 4 on CIFAR's 32 px).
        p: probability that a grid cell is kept.
        batch_size: masked images per forward pass (memory bound).
        baseline: what masked-out pixels become: ``"zero"`` (RISE's ``x * M``), ``"blur"`` (COCOA), a number or a
            tensor, see :func:`exaug.utils.images.make_baseline`.
        seed: seed of the private mask generator, re-seeded on every call (``None``: 0, unless ``generator``).
        generator: ``torch.Generator`` the masks are drawn from instead, advanced on every call (exclusive with
            ``seed``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int,
        grid: int = 7,
        p: float = 0.5,
        batch_size: int = 512,
        baseline: str | float | Tensor = "zero",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model)
        self.n_masks = positive_int("n_masks", n_masks)
        self.grid = positive_int("grid", grid)
        self.p = probability("p", p)
        self.batch_size = positive_int("batch_size", batch_size)
        self.baseline = check_baseline(baseline)
        self.generator = check_generator(generator)
        seed = check_seed(seed)
        if seed is not None and self.generator is not None:
            raise ValueError("give either seed or generator, not both")
        self.seed = 0 if seed is None and self.generator is None else seed

    def _moments(self, images: Tensor, score_fn: _ScoreFn) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Mask-weighted sums of the scores over all masks (float64).

        Returns:
            ``(s1, s2, weight, mean)``: ``s1 = sum_i s_i M_i`` and ``s2 = sum_i s_i^2 M_i``, both ``(B, 1, H, W)``;
            ``weight = sum_i M_i`` ``(1, 1, H, W)``; ``mean`` ``(B,)`` the unweighted mean score.
        """
        b, c, h, w = images.shape
        plan = plan_masks(self.n_masks, (h, w), self.grid, self.p, self.seed or 0, self.generator)
        base = make_baseline(images, self.baseline)
        delta = images - base
        acc = torch.float64
        s1 = torch.zeros(b, h * w, dtype=acc, device=images.device)
        s2 = torch.zeros_like(s1)
        weight = torch.zeros(h * w, dtype=acc, device=images.device)
        total = torch.zeros(b, dtype=acc, device=images.device)
        # Each chunk pairs m masks with up to `batch_size // m` images, so one forward sees <= batch_size images.
        per_mask_chunk = max(1, self.batch_size // b)
        images_per_pass = max(1, self.batch_size // per_mask_chunk)
        with torch.no_grad():
            for start in range(0, self.n_masks, per_mask_chunk):
                masks = render_masks(plan, start, start + per_mask_chunk, images.device, images.dtype)
                m = masks.shape[0]
                flat_masks = masks.view(m, h * w).to(acc)
                weight += flat_masks.sum(dim=0)
                for first in range(0, b, images_per_pass):
                    last = min(first + images_per_pass, b)
                    masked = base[first:last, None] + masks[None] * delta[first:last, None]  # (nb, m, C, H, W)
                    rows = torch.arange(first, last, device=images.device).repeat_interleave(m)
                    scores = score_fn(masked.view(-1, c, h, w), rows).to(acc).view(last - first, m)
                    s1[first:last] += scores @ flat_masks
                    s2[first:last] += scores.square() @ flat_masks
                    total[first:last] += scores.sum(dim=1)
        shape = (b, 1, h, w)
        return s1.view(shape), s2.view(shape), weight.view(1, 1, h, w), total / self.n_masks

    def _weighted_mean(self, s1: Tensor, weight: Tensor, mean: Tensor) -> Tensor:
        """``s1 / weight``; pixels no mask ever kept (possible with few masks) get the mean score: no evidence."""
        covered = weight > 0
        return torch.where(covered, s1 / weight.clamp_min(1e-12), mean.view(-1, 1, 1, 1).expand_as(s1))

    def extra_repr(self) -> str:
        baseline = "tensor" if isinstance(self.baseline, Tensor) else repr(self.baseline)
        return (
            f"n_masks={self.n_masks}, grid={self.grid}, p={self.p}, batch_size={self.batch_size}, "
            f"baseline={baseline}, {'generator' if self.generator is not None else f'seed={self.seed}'}"
        )


@register_explainer("rise")
class RISEExplainer(_RandomMaskExplainer):
    """RISE (Petsiuk et al. 2018): the target score averaged over random masks, weighted by each mask.

    Args:
        model: images -> logits ``(B, K)``, or an explanation-target module of :mod:`exaug.targets`.
        n_masks: random masks (5000: the paper's and COCOA's setting; each costs ``B`` forwards).
        grid: coarse grid side (7; use 4 for 32x32 images as COCOA does on CIFAR-10).
        p: keep probability of a grid cell.
        batch_size: masked images per forward pass.
        baseline: fill of masked-out pixels, ``"zero"`` (RISE), ``"blur"`` (COCOA), a number or a tensor.
        score: ``"softmax"`` (probability of the target class, RISE on classifiers), ``"raw"`` (the model's output
            column itself) or ``"auto"``: ``"raw"`` for modules that set ``outputs_scores = True`` (the targets
            of :mod:`exaug.targets`) or return a single column, else ``"softmax"``.
        normalization: ``"coverage"`` (divide by ``sum_i M_i``, default) or ``"p"`` (divide by ``n_masks * p``,
            the paper's formula); see the module docstring.
        seed: seed of the private mask generator, re-seeded on every call (``None``: 0, unless ``generator``).
        generator: ``torch.Generator`` the masks are drawn from instead, advanced on every call.
    """

    description = "RISE random-mask saliency; n_masks=5000, grid=7 (4 for 32px), p=0.5, baseline zero|blur"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 5000,
        grid: int = 7,
        p: float = 0.5,
        batch_size: int = 512,
        baseline: str | float | Tensor = "zero",
        score: str = "auto",
        normalization: str = "coverage",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, n_masks=n_masks, grid=grid, p=p, batch_size=batch_size, baseline=baseline, seed=seed,
                         generator=generator)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.score = score
        self.normalization = normalization

    def resolved_score(self, num_outputs: int) -> str:
        """``"softmax"`` or ``"raw"`` for a model with ``num_outputs`` output columns."""
        if self.score != "auto":
            return self.score
        raw = getattr(self.model, "outputs_scores", False) or num_outputs == 1
        return "raw" if raw else "softmax"

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        logits, targets = self._forward_logits(images, targets)
        use_softmax = self.resolved_score(logits.shape[1]) == "softmax"

        def score_fn(masked: Tensor, rows: Tensor) -> Tensor:
            out = self.logits_model(masked)
            if use_softmax:
                out = _at_least_float32(out).softmax(dim=1)
            return out.gather(1, targets[rows].unsqueeze(1)).squeeze(1)

        s1, _, weight, mean = self._moments(images, score_fn)
        if self.normalization == "p":
            raw = s1 / (self.n_masks * self.p)
        else:
            raw = self._weighted_mean(s1, weight, mean)
        return raw.float(), logits, targets

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, score={self.score!r}, normalization={self.normalization!r}"


@register_explainer("relax")
class RELAXExplainer(_RandomMaskExplainer):
    """RELAX (Wickstrøm et al. 2022): label-free importance of an encoder's representation.

    The model's ``(B, D)`` output is the representation (pass an encoder, e.g. ``run.model.encoder``); the map is
    the mask-weighted mean cosine similarity between the masked and the unmasked representation. ``targets``
    are validated and reported but do not change the map (there is no class).

    Args:
        model: images -> representations ``(B, D)``.
        n_masks: random masks (3000 in the paper).
        grid: see :class:`RISEExplainer`.
        p: see :class:`RISEExplainer`.
        batch_size: see :class:`RISEExplainer`.
        baseline: see :class:`RISEExplainer`.
        seed: see :class:`RISEExplainer`.
        generator: see :class:`RISEExplainer`.
    """

    description = "RELAX label-free importance of an encoder's representation; n_masks=3000, grid=7, p=0.5"
    explains_logits = False  # its model returns representations, possibly L2-normalised

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 3000,
        grid: int = 7,
        p: float = 0.5,
        batch_size: int = 512,
        baseline: str | float | Tensor = "zero",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, n_masks=n_masks, grid=grid, p=p, batch_size=batch_size, baseline=baseline, seed=seed,
                         generator=generator)

    def _relax(self, images: Tensor, reference: Tensor) -> RelaxResult:
        unmasked = F.normalize(_at_least_float32(reference).flatten(1), dim=1)

        def score_fn(masked: Tensor, rows: Tensor) -> Tensor:
            masked_reps = F.normalize(_at_least_float32(self.logits_model(masked)).flatten(1), dim=1)
            return (masked_reps * unmasked[rows]).sum(dim=1)

        s1, s2, weight, mean = self._moments(images, score_fn)
        importance = self._weighted_mean(s1, weight, mean)
        uncertainty = (self._weighted_mean(s2, weight, mean.square()) - importance.square()).clamp_min(0)
        return RelaxResult(importance.float(), uncertainty.float())

    def importance_and_uncertainty(self, images: Tensor) -> RelaxResult:
        """Raw RELAX importance and uncertainty maps ``(B, 1, H, W)`` (the model is isolated and left untouched)."""
        check_finite_images(check_images(images))
        images = images.detach()
        with isolated(self.model), torch.no_grad():
            return self._relax(images, self.logits_model(images))

    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        representation, targets = self._forward_logits(images, targets)
        return self._relax(images, representation).importance, representation, targets
