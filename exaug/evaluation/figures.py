"""Figures of an evaluation: the saliency grid (the ExCon paper's Figure 1 style) and insertion / deletion curves.

Matplotlib is used without pyplot (a ``Figure`` on an Agg canvas): no global state, safe on headless servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor

from ..transforms import unnormalize
from .annotations import class_names as dataset_class_names
from .context import EvalBatch, EvalContext

__all__ = ["draw_saliency_grid", "plot_insertion_deletion", "plot_saliency_grid"]


def plot_saliency_grid(
    originals: Tensor,
    saliency: Tensor,
    masked: Tensor,
    correct: Tensor,
    labels: Tensor,
    predicted: Tensor,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    wrong_label: str = "background",
) -> Path:
    """The ExCon paper's Figure 1 style grid: one column per image, rows original / saliency / masked view.

    Example:
        >>> import tempfile, torch
        >>> n = 2
        >>> path = plot_saliency_grid(torch.rand(n, 3, 8, 8), torch.rand(n, 1, 8, 8), torch.rand(n, 3, 8, 8),
        ...                           torch.tensor([True, False]), torch.tensor([0, 1]), torch.tensor([0, 0]),
        ...                           Path(tempfile.mkdtemp()) / "grid.png", class_names=["cat", "dog"])
        >>> path.read_bytes()[:4] == b"\\x89PNG"
        True

    Args:
        originals: ``(N, 3, H, W)`` pixels in ``[0, 1]``.
        saliency: ``(N, 1, H, W)`` maps in ``[0, 1]``.
        masked: ``(N, 3, H, W)`` masked views, pixels in ``[0, 1]``.
        correct: ``(N,)`` bool, whether the masked view was classified as its label (routing: positive).
        labels: ``(N,)`` true labels (titles of the first row).
        predicted: ``(N,)`` predictions on the originals (titles of the second row).
        path: PNG to write.
        class_names: names of the classes (default: indices).
        wrong_label: what a wrong masked view becomes (``"background"`` for ExConB, ``"dropped"`` for ExCon).

    Returns:
        The path written.

    Shape:
        - originals, masked: ``(N, 3, H, W)``; saliency: ``(N, 1, H, W)``; correct, labels, predicted: ``(N,)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def name(c: int) -> str:
        return (class_names[c] if class_names is not None and c < len(class_names) else str(c))[:12]

    n = originals.shape[0]
    fig = Figure(figsize=(1.35 * n + 0.6, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False)
    for i in range(n):
        image = originals[i].permute(1, 2, 0).numpy()
        axes[0, i].imshow(image)
        axes[0, i].set_title(name(int(labels[i])), fontsize=8)
        axes[1, i].imshow(image)
        axes[1, i].imshow(saliency[i, 0].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, i].set_title(f"pred {name(int(predicted[i]))}", fontsize=7)
        axes[2, i].imshow(masked[i].permute(1, 2, 0).numpy())
        ok = bool(correct[i])
        axes[2, i].set_title("positive" if ok else wrong_label, fontsize=8, color="green" if ok else "red")
        for row in range(3):
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
    for row, text in enumerate(("original", "saliency", "masked view")):
        axes[row, 0].set_ylabel(text, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def draw_saliency_grid(ctx: EvalContext, batch: EvalBatch, out: Path, images: int) -> dict[str, str]:
    """The saliency grid of the first ``images`` images of ``batch`` with the run's augment, as
    ``out/saliency_grid.png``; returns ``{"saliency_grid": file name}`` (empty when nothing is drawn)."""
    if ctx.augment is None:
        raise ValueError("the saliency grid requires the run's augment (an explainer in the context)")
    n = min(int(images), batch.images.shape[0])
    if n < 1:
        return {}
    originals, labels = batch.images[:n], batch.labels[:n]
    views = ctx.augment(originals, (originals, originals), labels, ctx.model)
    assert views.masked is not None and views.saliency is not None and views.correct is not None

    def pixels(x: Tensor) -> Tensor:
        return unnormalize(x, ctx.mean, ctx.std).clamp(0, 1).cpu()

    plot_saliency_grid(
        pixels(originals), views.saliency.cpu(), pixels(views.masked), views.correct.cpu(), labels.cpu(),
        batch.logits[:n].argmax(dim=1).cpu(), out / "saliency_grid.png", class_names=dataset_class_names(ctx.dataset),
        wrong_label="background" if ctx.augment.mode == "exconb" else "dropped",
    )
    return {"saliency_grid": "saliency_grid.png"}


def plot_insertion_deletion(result: Mapping[str, Any], path: str | Path) -> Path:
    """Mean insertion and deletion curves with their AUCs in the legend.

    Example:
        >>> import tempfile
        >>> result = {"x": [0.0, 0.5, 1.0], "insertion_curve": [0.1, 0.6, 0.9], "deletion_curve": [0.9, 0.3, 0.1],
        ...           "insertion_auc": 0.55, "deletion_auc": 0.4}
        >>> plot_insertion_deletion(result, Path(tempfile.mkdtemp()) / "curves.png").suffix
        '.png'

    Args:
        result: the ``insertion_deletion`` entry of ``eval.json`` (``x``, ``{insertion,deletion}_curve``,
            ``{insertion,deletion}_auc``).
        path: PNG to write.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for mode, colour in (("insertion", "tab:green"), ("deletion", "tab:red")):
        auc = result[f"{mode}_auc"]
        ax.plot(result["x"], result[f"{mode}_curve"], color=colour, label=f"{mode} (AUC {auc:.3f})")
    ax.set_xlabel("fraction of pixels inserted / deleted (by saliency)")
    ax.set_ylabel("probability of the explained class")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
