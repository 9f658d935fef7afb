"""The contract every saliency backend follows.

An :class:`Explainer` wraps a model that maps images ``(B, C, H, W)`` to logits ``(B, K)``. Calling it returns
one saliency map per image, ``(B, 1, H, W)``, min-max normalised to ``[0, 1]`` per sample and detached. The
work is done in :meth:`Explainer._attribute`, which subclasses implement; the base class validates inputs,
resolves targets, isolates the model (see :mod:`exaug.utils.isolation`), reduces and normalises the raw map.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ..utils.checks import check_images, check_model_output
from ..utils.isolation import isolated
from ..utils.outputs import LogitsOnly, logits_of
from .layers import (
    ReshapeTransform,
    check_layout,
    find_default_cam_layer,
    layer_called,
    resolve_layer,
    to_feature_map,
    unwrap_model,
    unwrapped_children,
)

__all__ = [
    "Explainer",
    "Explanation",
    "check_finite_images",
    "normalize_saliency",
    "resolve_targets",
    "resolve_layer",
    "find_default_cam_layer",
    "upsample_bilinear",
    "targets_or_predicted",
]

# A map whose range is below this fraction of its magnitude is treated as constant: rounding noise of a
# truly flat map (e.g. Grad-CAM of a 1x1 feature map) must not be stretched into a random-looking mask.
FLAT_RELATIVE_EPS = 1e-6


@dataclasses.dataclass
class Explanation:
    """Result of :meth:`Explainer.explain`.

    Attributes:
        saliency: ``(B, 1, H, W)`` float, per-sample min-max normalised to ``[0, 1]``, detached.
        targets: ``(B,)`` int64, the class explained for each sample.
        logits: ``(B, K)`` detached logits of the explained images, or ``None`` when the backend does not
            run a plain forward pass (e.g. perturbation methods).
        flat: ``(B,)`` bool, True where the raw map was constant (or not finite) and was set to all zeros.
        raw: ``(B, 1, h, w)`` detached map at the backend's native resolution, before upsampling and
            normalisation (a 16x16 layer map for Grad-CAM at a stride-2 layer of 32x32 images; ``h, w = H, W``
            for pixel-resolution backends), or ``None`` when unknown (plain callables).
            ``normalize_saliency(upsample_bilinear(raw.float(), (H, W)))`` reproduces ``saliency`` and ``flat``
            bit for bit when ``h, w != H, W``, which is what a compact
            :class:`~exaug.augment.SaliencyCache` stores.
    """

    saliency: Tensor
    targets: Tensor
    logits: Tensor | None
    flat: Tensor
    raw: Tensor | None = None


def normalize_saliency(raw: Tensor, eps: float = FLAT_RELATIVE_EPS) -> tuple[Tensor, Tensor]:
    """Per-sample min-max normalisation that never produces NaN.

    Args:
        raw: ``(B, 1, H, W)`` (or any ``(B, ...)``) map.
        eps: relative flatness tolerance: a sample whose ``max - min`` is at most ``eps * max(|max|, |min|)``
            (or exactly zero) is flat.

    Returns:
        ``(saliency, flat)``: ``saliency`` has the shape of ``raw`` with values in ``[0, 1]`` (all zeros for
        flat or non-finite samples), ``flat`` is ``(B,)`` bool.
    """
    values = raw.flatten(1)
    # One pass for both extremes; NaN and inf propagate into them, so per-sample scalars tell finiteness and
    # the full-size map is only touched by the affine map below (this runs on every training step).
    lo, hi = torch.aminmax(values, dim=1, keepdim=True)
    span = hi - lo
    finite = torch.isfinite(span)
    flat = ~finite | (span <= eps * torch.maximum(hi.abs(), lo.abs())) | (span == 0)
    scale = torch.where(flat, torch.zeros_like(span), 1.0 / torch.where(flat, torch.ones_like(span), span))
    offset = torch.where(finite, lo, torch.zeros_like(lo))
    # Flat samples are scaled by 0; non-finite entries (0 * inf, NaN) are then zeroed.
    normed = ((values - offset) * scale).nan_to_num_(0.0, 0.0, 0.0).clamp_(0.0, 1.0)
    return normed.view_as(raw), flat.squeeze(1)


def check_finite_images(images: Tensor, name: str = "images") -> Tensor:
    """Raise a ``ValueError`` naming ``name`` if the batch holds NaN or Inf values; return it unchanged.

    Costs one reduction and one host sync (``torch.isfinite(images).all()``); the offending samples are only
    counted on the error path. A non-finite pixel would otherwise reach the model and give NaN logits, NaN
    gradients and a silently flat (all-zero) map, or an error deep inside a library.

    Shape:
        ``images``: any ``(B, ...)``.
    """
    if not bool(torch.isfinite(images).all()):
        bad = (~torch.isfinite(images)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise ValueError(f"{name} must be finite, but {len(bad)} sample(s) hold NaN or Inf values (indices {shown})")
    return images


def _bilinear_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(n_out, n_in)`` weights of 1-D linear interpolation with ``align_corners=False`` (PyTorch / OpenCV)."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0)
    lo = src.floor().long().clamp_(max=n_in - 1)
    hi = (lo + 1).clamp_(max=n_in - 1)
    frac = src - lo
    weights = torch.zeros(n_out, n_in, device=device, dtype=torch.float64)
    rows = torch.arange(n_out, device=device)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.to(dtype)


def upsample_bilinear(maps: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize of ``(B, 1, h, w)`` maps to ``size``, equal to ``F.interpolate(..., mode="bilinear",
    align_corners=False)`` up to float rounding.

    Bilinear interpolation is separable, so it is two small matrix products, ``W_h @ map @ W_w^T``: on the CPU
    several times faster than ``F.interpolate`` for single-channel maps, which every explanation needs.
    """
    h_out, w_out = int(size[0]), int(size[1])
    w_h = _bilinear_matrix(maps.shape[-2], h_out, maps.device, maps.dtype)
    w_w = _bilinear_matrix(maps.shape[-1], w_out, maps.device, maps.dtype)
    return torch.matmul(torch.matmul(w_h, maps), w_w.T)


def resolve_targets(targets: Any, batch_size: int, num_classes: int | None, device: torch.device) -> Tensor | None:
    """Validate and convert ``targets`` to a ``(B,)`` int64 tensor on ``device``; ``None`` stays ``None``.

    Accepts an int (same class for every sample), a sequence of ints, or an integer tensor of shape ``(B,)``.
    Range is checked against ``num_classes`` when it is known (this costs one host sync, done once per call).
    """
    if targets is None:
        return None
    if isinstance(targets, int):
        targets = torch.full((batch_size,), targets, dtype=torch.long, device=device)
    elif not isinstance(targets, Tensor):
        targets = torch.as_tensor(list(targets), dtype=torch.long, device=device)
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        raise TypeError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    targets = targets.to(device=device, dtype=torch.long).reshape(-1)
    if targets.numel() != batch_size:
        raise ValueError(f"targets must have one entry per image: expected {batch_size}, got {targets.numel()}")
    if num_classes is not None and targets.numel() > 0:
        lo, hi = torch.stack((targets.min(), targets.max())).tolist()  # one host sync
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"targets must be class indices in [0, {num_classes - 1}], got values in [{lo}, {hi}]")
    return targets


class Explainer(abc.ABC):
    """Base class of every saliency backend.

    Subclasses set ``description`` (one line, shown by ``exaug explainers``) and implement :meth:`_attribute`.

    Layer-based backends (``uses_layer``) read their layer's output through :meth:`feature_map`, which handles
    token ``(B, N, C)`` and channels-last ``(B, h, w, C)`` layers (see :mod:`exaug.explainers.layers`).

    Args:
        model: maps images ``(B, C, H, W)`` to logits ``(B, K)``. DataParallel / DDP / ``torch.compile`` wrappers
            are looked through: the explanation runs the plain module(s), layer paths ignore the wrappers.
        target_layer: layer-based backends only: dotted path or module; ``None`` picks a default on the first call
            (see :func:`~exaug.explainers.layers.find_default_cam_layer`).
        reshape_transform: layer-based backends only: callable from the layer output to ``(B, C, h, w)``.
        layout: layer-based backends only: ``"auto"``, ``"nchw"``, ``"nhwc"`` or ``"tokens"`` (see
            :func:`~exaug.explainers.layers.to_feature_map`).
    """

    description: str = ""
    #: Whether the backend needs a feature layer (CAM family); then ``target_layer`` is resolved.
    uses_layer: bool = False
    #: The model returns class logits (checked: shape, and a warning on L2-normalised rows); False for backends
    #: that explain a representation (RELAX).
    explains_logits: bool = True

    def __init__(
        self,
        model: nn.Module,
        *,
        target_layer: str | nn.Module | None = None,
        reshape_transform: ReshapeTransform | None = None,
        layout: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module mapping images to logits, got {type(model).__name__}")
        self.model = unwrap_model(model)
        # Libraries that call the model themselves (Captum, pytorch-grad-cam) index its output as logits: they get
        # this view, which reads a mapping / ModelOutput / tuple output as its logits (transparent for tensors).
        self.logits_model = LogitsOnly(self.model)
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if not self.uses_layer and (target_layer is not None or reshape_transform is not None or layout != "auto"):
            raise ValueError(f"{type(self).__name__} does not use a target_layer (nor reshape_transform / layout)")
        if reshape_transform is not None and not callable(reshape_transform):
            raise TypeError(f"reshape_transform must be callable, got {type(reshape_transform).__name__}")
        self.reshape_transform = reshape_transform
        self.layout = check_layout(layout)
        if target_layer is not None:
            self.layer_name, self.layer = resolve_layer(self.model, target_layer)
        self._layer_chosen_automatically = False

    # -- public API -----------------------------------------------------------------------------------------
    def __call__(self, images: Tensor, targets: Any = None) -> Tensor:
        """Saliency maps ``(B, 1, H, W)`` in ``[0, 1]`` for ``images`` ``(B, C, H, W)`` and ``targets`` ``(B,)``."""
        return self.explain(images, targets).saliency

    def explain(self, images: Tensor, targets: Any = None) -> Explanation:
        """Explain ``targets`` (``None``: the predicted class) for ``images``.

        Args:
            images: ``(B, C, H, W)`` floating point batch on the model's device.
            targets: ``None``, an int, a sequence of ints or an int64 tensor ``(B,)``.

        Returns:
            :class:`Explanation` with ``saliency`` ``(B, 1, H, W)``.

        Raises:
            ValueError: ``images`` hold NaN or Inf (checked with one host sync, :func:`check_finite_images`), bad
                ``targets``, or a ``target_layer`` that the forward never runs.

        Works under ``torch.no_grad()`` and ``torch.inference_mode()``: the backend's own computation leaves
        inference mode with gradients enabled (inference tensors are copied first, as autograd cannot save them);
        what the caller gets back are ordinary detached tensors.
        """
        check_images(images)
        check_finite_images(images)
        targets = resolve_targets(targets, images.shape[0], None, images.device)
        with torch.inference_mode(False), torch.enable_grad():
            if images.is_inference():
                images = images.clone()
            if targets is not None and targets.is_inference():
                targets = targets.clone()
            return self._explain(images, targets)

    def _explain(self, images: Tensor, targets: Tensor | None) -> Explanation:
        """:meth:`explain` after validation, outside inference mode."""
        if self.uses_layer and self.layer is None:
            name = find_default_cam_layer(self.model, images, self.reshape_transform, self.layout)
            self.layer_name, self.layer = resolve_layer(self.model, name)
            self._layer_chosen_automatically = True
        # Outer callers may hold an autograd graph or run under no_grad; neither may leak in or out.
        images = images.detach()
        with isolated(self.model), unwrapped_children(self.model), self._layer_must_run():
            raw, logits, targets = self._attribute(images, targets)
        if logits is not None and self.explains_logits:  # every backend; warns once per model on embeddings
            check_model_output(logits, images.shape[0], model=self.model)
        raw = raw.detach()
        if raw.dim() == 3:
            raw = raw.unsqueeze(1)
        if raw.shape[1] != 1:
            raise RuntimeError(f"{type(self).__name__} produced a map with {raw.shape[1]} channels, expected 1")
        native = raw
        if raw.shape[-2:] != images.shape[-2:]:
            raw = upsample_bilinear(raw.float(), images.shape[-2:])
        saliency, flat = normalize_saliency(raw.float())
        return Explanation(
            saliency=saliency,
            targets=targets,
            logits=None if logits is None else logits.detach(),
            flat=flat,
            raw=native,
        )

    def _layer_must_run(self) -> Any:
        """A clear ``ValueError`` naming the layer if a layer backend's target layer never runs in the forward."""
        if self.layer is None:
            return contextlib.nullcontext()
        return layer_called(self.model, self.layer, self.layer_name or type(self.layer).__name__)

    # -- for subclasses ---------------------------------------------------------------------------------------
    def feature_map(self, output: Tensor, image_size: tuple[int, int]) -> Tensor:
        """The target layer's output as ``(B, C, h, w)`` (this explainer's ``reshape_transform`` / ``layout``)."""
        return to_feature_map(output, self.reshape_transform, layout=self.layout, image_size=image_size)

    @abc.abstractmethod
    def _attribute(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """Compute the raw map. Runs inside :func:`isolated` (eval mode, gradients hidden).

        Args:
            images: ``(B, C, H, W)``, detached.
            targets: ``(B,)`` int64 or ``None`` (then explain the predicted class).

        Returns:
            ``(raw, logits, targets)``: raw map ``(B, 1, h, w)`` (resized to ``H x W`` by the caller if needed),
            logits ``(B, K)`` or ``None``, and the ``(B,)`` targets actually explained.
        """

    def _forward_logits(self, images: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """One no-grad forward: the logits to report and the targets to explain.

        Library backends do not hand back their logits, and explicit targets can only be range-checked against
        the number of classes, so this forward is what turns bad ``targets`` into a clear ``ValueError`` instead
        of an index error deep inside a library.

        Returns:
            ``(logits, targets)``: ``(B, K)`` detached logits and ``(B,)`` int64 targets.
        """
        with torch.no_grad():
            logits = logits_of(self.model(images))
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits of shape (B, K), got {tuple(logits.shape)}")
        return logits, targets_or_predicted(logits, targets)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        parts = []
        if self.uses_layer:
            if self.layer_name is None:
                parts.append("target_layer=<chosen on first call>")
            else:
                how = " (auto)" if self._layer_chosen_automatically else ""
                parts.append(f"target_layer={self.layer_name!r}{how}")
            if self.reshape_transform is not None:
                parts.append(f"reshape_transform={getattr(self.reshape_transform, '__name__', 'callable')}")
            if self.layout != "auto":
                parts.append(f"layout={self.layout!r}")
        extra = self.extra_repr()
        if extra:
            parts.append(extra)
        return f"{type(self).__name__}({', '.join(parts)})"


def targets_or_predicted(logits: Tensor, targets: Tensor | None) -> Tensor:
    """``targets`` if given (range-checked against ``logits``), else the argmax of ``logits``."""
    if targets is None:
        return logits.argmax(dim=1)
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits of shape (B, K), got {tuple(logits.shape)}")
    resolve_targets(targets, logits.shape[0], logits.shape[1], logits.device)
    return targets
