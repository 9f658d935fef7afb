"""Explanation targets for encoders without labels: COCOA (Lin et al. 2023) and the label-free baselines.

Each target is an ``nn.Module`` that maps images ``(N, C, H, W)`` to scores ``(N, R)``: the similarity of the
image's representation to ``R`` fixed *directions* in representation space. Used as the ``model`` of any
registry explainer, column ``r`` plays the role of class ``r``'s logit, so everything works unchanged:

* single-direction targets (:class:`ContrastiveCorpusSimilarity`, :class:`CorpusSimilarity`) return ``(N, 1)``:
  explain them with ``targets=0`` (or ``None``, whose argmax is column 0);
* per-explicand targets (:class:`RepresentationSimilarity`, :class:`ContrastiveSimilarity`) built from a batch
  of ``R`` explicands return ``(N, R)``: explain that batch with ``targets=torch.arange(R)`` so image ``b`` is
  explained by its own column (this keeps the row alignment that gradient and perturbation methods break when
  they expand a batch internally);
* per-class corpora (``ContrastiveCorpusSimilarity(encoder, [corpus_0, ..., corpus_K-1], foil)``) return
  ``(N, K)``: ``targets=labels`` explains each image's own class, and the argmax is a nearest-class-mean
  classifier.

Gradient methods differentiate the scores through the encoder; perturbation methods (``rise``) read the raw
scores, because every target sets ``outputs_scores = True`` (a softmax over similarities would be meaningless).

With cosine similarity the COCOA target is ``gamma(x) = mean_c cos(f(x), f(c)) - mean_f cos(f(x), f(foil))
= f(x)/|f(x)| . (mu_C - mu_F)``, where ``mu`` are the means of the *normalised* corpus and foil representations.
They are computed once, in batches, under ``no_grad`` with the encoder isolated (eval mode, its state untouched);
:meth:`SimilarityTarget.refresh` recomputes them after the encoder changed (e.g. during training).

Randomness: the targets themselves are deterministic; :func:`sample_foil` and :func:`sample_corpus` draw from a
private generator seeded with their ``seed`` and leave the global RNGs alone. Stochastic explainers used on such a
target (``rise``, ``gradient_shap``, ``smoothgrad``) take their own ``seed`` / ``generator`` (``docs/explainers.md``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .utils.checks import positive_int
from .utils.checks import check_images
from .utils.isolation import isolated

__all__ = [
    "CORPUS_SIZE",
    "FOIL_SIZE",
    "SIMILARITIES",
    "ContrastiveCorpusSimilarity",
    "ContrastiveSimilarity",
    "CorpusSimilarity",
    "RepresentationSimilarity",
    "SimilarityTarget",
    "encode",
    "foil_size_bound",
    "sample_corpus",
    "sample_foil",
]

SIMILARITIES: tuple[str, ...] = ("cosine", "dot")
#: COCOA's corpus size per class (CIFAR-10, MURA, ImageNette).
CORPUS_SIZE = 100
#: COCOA's foil size: random training images, justified by the concentration bound, see :func:`foil_size_bound`.
FOIL_SIZE = 1500


def foil_size_bound(epsilon: float = 0.05, delta: float = 0.001, non_negative: bool = True) -> int:
    """Foil size ``n`` such that the empirical foil term is within ``epsilon`` of its expectation w.p. ``1 - delta``.

    Hoeffding's inequality for a mean of ``n`` i.i.d. similarities bounded in an interval of width ``w``:
    ``n >= w^2 log(2 / delta) / (2 epsilon^2)``. Cosine similarities lie in ``[-1, 1]`` (``w = 2``), or in
    ``[0, 1]`` (``w = 1``) when representations are non-negative (ReLU encoders such as ResNets), which is the
    case COCOA uses to set 1500 foil images (the defaults here give 1521).
    """
    if not 0 < epsilon:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    width = 1.0 if non_negative else 2.0
    return math.ceil(width**2 * math.log(2 / delta) / (2 * epsilon**2))


def _check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    return similarity


def encode(encoder: nn.Module, images: Tensor, batch_size: int = 256, normalize: bool = False) -> Tensor:
    """Representations ``(N, D)`` of ``images`` ``(N, C, H, W)``, in batches, without autograd.

    The encoder runs isolated (eval mode; training flags and ``.grad`` restored), so calling this inside a
    training loop leaves no trace. Outputs with more than two dimensions are flattened.
    """
    check_images(images, "images")
    batch_size = positive_int("batch_size", batch_size)
    device = next((p.device for p in encoder.parameters()), images.device)
    chunks = []
    with isolated(encoder), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunks.append(encoder(images[start : start + batch_size].to(device)).float().flatten(1))
    reps = torch.cat(chunks)
    return F.normalize(reps, dim=1) if normalize else reps


class SimilarityTarget(nn.Module):
    """Scores ``(N, R)``: similarity of ``encoder(x)`` to ``R`` fixed directions (base of every target).

    ``forward(x) = g(x) @ directions.T`` with ``g(x) = f(x) / |f(x)|`` for ``"cosine"`` and ``f(x)`` for ``"dot"``.
    The directions are a buffer (moved with ``.to()``, no gradient). Subclasses compute them in
    :meth:`compute_directions` from images they keep, so :meth:`refresh` can recompute them.

    Args:
        encoder: images -> representations ``(N, D)`` (e.g. ``run.model.encoder``).
        similarity: ``"cosine"`` (COCOA's main setting) or ``"dot"``.
        batch_size: images per forward pass when computing the directions.
    """

    #: Tells perturbation explainers (``rise``) to use these outputs as scores, not as logits to softmax.
    outputs_scores = True

    def __init__(self, encoder: nn.Module, similarity: str = "cosine", batch_size: int = 256) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module mapping images to representations, got "
                            f"{type(encoder).__name__}")
        self.encoder = encoder
        self.similarity = _check_similarity(similarity)
        self.batch_size = positive_int("batch_size", batch_size)
        self.register_buffer("directions", torch.empty(0), persistent=False)

    @property
    def normalize(self) -> bool:
        return self.similarity == "cosine"

    def mean_representation(self, images: Tensor) -> Tensor:
        """``(D,)`` mean of the (normalised, for cosine) representations of ``images`` ``(N, C, H, W)``."""
        if images.shape[0] == 0:
            raise ValueError("cannot average the representations of an empty set of images")
        return encode(self.encoder, images, self.batch_size, self.normalize).mean(dim=0)

    def compute_directions(self) -> Tensor:
        """``(R, D)`` directions from the stored images; subclasses override."""
        return self.directions

    def refresh(self) -> "SimilarityTarget":
        """Recompute the directions with the encoder's current weights (call after training steps)."""
        self.directions = self.compute_directions().detach()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Scores ``(N, R)`` for ``images`` ``(N, C, H, W)``; differentiable w.r.t. the images."""
        reps = self.encoder(images).flatten(1)
        if self.normalize:
            reps = F.normalize(reps, dim=1)
        return reps @ self.directions.to(reps.dtype).T

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, directions={tuple(self.directions.shape)}"


def _image_sets(value: Tensor | Sequence[Tensor], name: str) -> list[Tensor]:
    """One image tensor or a sequence of them -> list of ``(N_r, C, H, W)`` tensors, all validated."""
    sets = [value] if isinstance(value, Tensor) else list(value)
    if not sets:
        raise ValueError(f"{name} must be an image tensor (N, C, H, W) or a non-empty sequence of them")
    for i, images in enumerate(sets):
        label = name if isinstance(value, Tensor) else f"{name}[{i}]"
        if not isinstance(images, Tensor):
            raise TypeError(f"{label} must be a tensor (N, C, H, W), got {type(images).__name__}")
        check_images(images, label)
        if images.shape[0] == 0:
            raise ValueError(f"{label} must hold at least one image")
    return [images.detach() for images in sets]


class CorpusSimilarity(SimilarityTarget):
    """``mean_c sim(f(x), f(c))`` over a corpus (COCOA's "corpus" ablation): ``(N, 1)``, or ``(N, K)`` for ``K``
    corpora (then the argmax is a nearest-class-mean classifier).

    Args:
        encoder: images -> representations.
        corpus: ``(N_c, C, H, W)`` images, or a sequence of such tensors (one direction each).
        similarity: see :class:`SimilarityTarget`.
        batch_size: see :class:`SimilarityTarget`.
    """

    def __init__(
        self, encoder: nn.Module, corpus: Tensor | Sequence[Tensor], similarity: str = "cosine", *,
        batch_size: int = 256,
    ) -> None:
        super().__init__(encoder, similarity, batch_size)
        self.corpora = _image_sets(corpus, "corpus")
        self.refresh()

    def compute_directions(self) -> Tensor:
        return torch.stack([self.mean_representation(c) for c in self.corpora])


class ContrastiveCorpusSimilarity(CorpusSimilarity):
    """COCOA's target: ``mean_c sim(f(x), f(c)) - mean_f sim(f(x), f(foil))`` as ``(N, 1)`` (``(N, K)`` for
    ``K`` corpora).

    Args:
        encoder: images -> representations.
        corpus: ``(N_c, C, H, W)`` images of the class of interest (COCOA: 100), or a sequence of corpora.
        foil: ``(N_f, C, H, W)`` contrasting images (COCOA: :data:`FOIL_SIZE` random training images, see
            :func:`sample_foil`).
        similarity: see :class:`SimilarityTarget`.
        batch_size: see :class:`SimilarityTarget`.
    """

    def __init__(
        self, encoder: nn.Module, corpus: Tensor | Sequence[Tensor], foil: Tensor, similarity: str = "cosine", *,
        batch_size: int = 256,
    ) -> None:
        # Plain tensor attributes may be set before Module.__init__; refresh() (run by the parent) needs the foil.
        self.foil = _foil_images(foil)
        super().__init__(encoder, corpus, similarity=similarity, batch_size=batch_size)

    def compute_directions(self) -> Tensor:
        return super().compute_directions() - self.mean_representation(self.foil)

    @property
    def foil_size(self) -> int:
        """Number of foil images."""
        return self.foil.shape[0]


def _foil_images(foil: Any) -> Tensor:
    if not isinstance(foil, Tensor):
        raise TypeError(f"foil must be an image tensor (N, C, H, W), got {type(foil).__name__}")
    return _image_sets(foil, "foil")[0]


def _representations(value: Tensor, name: str) -> Tensor:
    if not isinstance(value, Tensor) or value.dim() not in (1, 2) or value.shape[-1] == 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a representation (D,) or a batch of them (R, D), got {shape}")
    return value.detach().float().reshape(-1, value.shape[-1])


class RepresentationSimilarity(SimilarityTarget):
    """Label-free target: similarity to the explicand's own representation (label-free importance / RELAX).

    Args:
        encoder: images -> representations.
        explicand_representation: ``(D,)`` or ``(R, D)`` (e.g. ``encode(encoder, explicands)``); gives ``(N, R)``
            scores, explain explicand ``r`` with target ``r``.
        similarity: see :class:`SimilarityTarget`.
        batch_size: see :class:`SimilarityTarget`.
    """

    def __init__(
        self, encoder: nn.Module, explicand_representation: Tensor, similarity: str = "cosine", *,
        batch_size: int = 256,
    ) -> None:
        super().__init__(encoder, similarity, batch_size)
        reference = _representations(explicand_representation, "explicand_representation")
        self.register_buffer("reference", reference, persistent=False)
        self.refresh()

    @classmethod
    def from_images(cls, encoder: nn.Module, explicands: Tensor, **kwargs: Any) -> "RepresentationSimilarity":
        """Build the target for ``explicands`` ``(R, C, H, W)``: column ``r`` is explicand ``r``'s similarity."""
        return cls(encoder, encode(encoder, explicands, kwargs.get("batch_size", 256)), **kwargs)

    def compute_directions(self) -> Tensor:
        # The reference is a fixed representation, not images: refreshing keeps it as it is.
        return F.normalize(self.reference, dim=1) if self.normalize else self.reference


class ContrastiveSimilarity(RepresentationSimilarity):
    """COCOA's "contrastive label-free" ablation: ``sim(f(x), f(explicand)) - mean_f sim(f(x), f(foil))``.

    Args:
        encoder: images -> representations.
        explicand_representation: ``(D,)`` or ``(R, D)``.
        foil: ``(N_f, C, H, W)`` contrasting images.
        similarity: see :class:`SimilarityTarget`.
        batch_size: see :class:`SimilarityTarget`.
    """

    def __init__(
        self, encoder: nn.Module, explicand_representation: Tensor, foil: Tensor, similarity: str = "cosine", *,
        batch_size: int = 256,
    ) -> None:
        self.foil = _foil_images(foil)
        super().__init__(encoder, explicand_representation, similarity=similarity, batch_size=batch_size)

    @classmethod
    def from_images(  # type: ignore[override]
        cls, encoder: nn.Module, explicands: Tensor, foil: Tensor, **kwargs: Any
    ) -> "ContrastiveSimilarity":
        """Build the target for ``explicands`` ``(R, C, H, W)`` against ``foil``."""
        return cls(encoder, encode(encoder, explicands, kwargs.get("batch_size", 256)), foil, **kwargs)

    def compute_directions(self) -> Tensor:
        return super().compute_directions() - self.mean_representation(self.foil)


# -- sampling corpus and foil sets from datasets ---------------------------------------------------------------


def _labels_of(dataset: Dataset) -> Tensor | None:
    from .data import dataset_targets

    return dataset_targets(dataset)


def _draw(dataset: Dataset, n: int, seed: int, accept: Any, argument: str) -> Tensor:
    """``n`` images ``(n, C, H, W)`` drawn without replacement, in a seeded random order, whose label passes
    ``accept(label)``; labels come from ``dataset.targets`` when exposed, else images are loaded lazily in that
    order until ``n`` are accepted (so only about ``n`` images are read)."""
    n = positive_int(argument, n)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a map-style dataset of (image, label) pairs, got {type(dataset).__name__}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(int(seed)))
    labels = _labels_of(dataset)
    if labels is not None:
        order = order[torch.tensor([bool(accept(int(labels[i]))) for i in order.tolist()], dtype=torch.bool)]
        if order.numel() < n:
            raise ValueError(f"{argument}={n} but the dataset has only {order.numel()} eligible images")
        return torch.stack([torch.as_tensor(dataset[i][0]) for i in order[:n].tolist()])
    images = []
    for i in order.tolist():
        image, label = dataset[i]
        if accept(int(label)):
            images.append(torch.as_tensor(image))
            if len(images) == n:
                return torch.stack(images)
    raise ValueError(f"{argument}={n} but the dataset has only {len(images)} eligible images")


def sample_foil(dataset: Dataset, n: int = FOIL_SIZE, seed: int = 0, exclude_class: int | None = None) -> Tensor:
    """COCOA's foil: ``n`` random images ``(n, C, H, W)`` of ``dataset`` (default 1500, the paper's size).

    Args:
        dataset: map-style dataset of ``(image tensor, label)`` pairs (e.g. ``run.dataset("train")``).
        n: foil size, see :func:`foil_size_bound`.
        seed: seed of a private ``torch.Generator`` drawing the order (the same seed gives the same foil; torch's,
            numpy's and Python's global RNGs are neither read nor advanced).
        exclude_class: skip images of this class (the paper samples from all classes: ``None``).
    """
    return _draw(dataset, n, seed, lambda label: label != exclude_class, "n")


def sample_corpus(dataset: Dataset, class_index: int, n: int = CORPUS_SIZE, seed: int = 0) -> Tensor:
    """COCOA's corpus: ``n`` random images ``(n, C, H, W)`` of class ``class_index`` (default 100).

    Args:
        dataset: map-style dataset of ``(image tensor, label)`` pairs.
        class_index: the class of interest.
        n: corpus size (COCOA: :data:`CORPUS_SIZE`).
        seed: seed of a private ``torch.Generator`` drawing the order (the same seed gives the same corpus; torch's,
            numpy's and Python's global RNGs are neither read nor advanced).
    """
    return _draw(dataset, n, seed, lambda label: label == class_index, "n")
