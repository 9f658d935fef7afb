"""``exaug explain``: saliency overlays for images of a dataset or image files, for a trained run or a model.

Examples::

    exaug explain --run runs/cifar --index 0 1 2 --explainer gradcam                      # the predicted class
    exaug explain --run runs/cifar --index 0 1 --target cocoa --corpus-class 1 --explainer rise \\
        --option n_masks=2000 --option grid=4 --option baseline=blur                     # COCOA, no labels needed
    exaug explain --run runs/cifar --image cat.jpg --target label-free --explainer integrated_gradients

Targets: ``class`` explains a class of the run's linear classifier (``--class``, default: the prediction);
``cocoa`` explains the contrastive corpus similarity of the encoder's representation (corpus: ``--corpus-size``
training images of ``--corpus-class``; foil: ``--foil-size`` random training images); ``label-free`` explains the
similarity to each image's own representation (``--explainer relax`` explains the encoder directly and needs
``--target label-free``). Writes one PNG per image (image | overlay) and ``grid.png``.

Exit codes: 0 success; 2 bad usage (missing run folder or image, unknown explainer / option / dataset, index or
class out of range, bad device); 1 the run failed (corrupt checkpoint, unwritable output folder); 130
interrupted. Errors are reported by :func:`exaug.cli.main` (see :mod:`exaug.cli.errors`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .errors import UsageError, usage_errors
from .options import add_option_argument
from .trust import add_trust_argument

__all__ = ["TARGETS", "add_parser", "run", "run_explain", "save_overlays"]

TARGETS: tuple[str, ...] = ("class", "cocoa", "label-free")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``exaug explain``."""
    parser = subparsers.add_parser(
        "explain", help="write saliency overlays (class, COCOA or label-free targets) as PNGs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("images (one of --image / --dataset; a --run defaults to its own dataset)")
    source.add_argument("--image", nargs="+", type=Path, help="image files")
    source.add_argument("--dataset", help="dataset name (see exaug.data.list_datasets)")
    source.add_argument("--data-root", help="dataset folder or zip")
    source.add_argument("--split", default="test",
                        help="split the explained images come from (default: %(default)s)")
    source.add_argument("--index", nargs="+", type=int, default=[0, 1, 2, 3],
                        help="dataset indices (default: %(default)s)")
    model = parser.add_argument_group("model (one of --run / --model)")
    model.add_argument("--run", type=Path, help="a run folder written by `exaug train`")
    add_trust_argument(model, "the --run checkpoint")
    model.add_argument("--model", help="an encoder name (random weights unless --pretrained): pipeline checks")
    model.add_argument("--pretrained", action="store_true", help="torchvision weights for tv:<name> models")
    model.add_argument("--num-classes", type=int, default=10,
                       help="classes of --model's linear head (default: %(default)s)")
    model.add_argument("--image-size", type=int, help="input side (default: the run's, else 32)")
    what = parser.add_argument_group("explanation")
    what.add_argument("--explainer", default="gradcam",
                      help="a registered explainer (see `exaug explainers`; default: %(default)s)")
    add_option_argument(what, "explainer option")
    what.add_argument("--target", choices=TARGETS, default="class", help="what to explain (default: %(default)s)")
    what.add_argument("--class", dest="class_index", type=int, help="class to explain (--target class; default: "
                      "the predicted class)")
    what.add_argument("--corpus-class", type=int, help="class of the COCOA corpus (--target cocoa)")
    what.add_argument("--corpus-size", type=int, default=100, help="corpus images (default: %(default)s)")
    what.add_argument("--foil", choices=("random",), default="random", help="foil: random training images")
    what.add_argument("--foil-size", type=int, default=1500, help="foil images (default: %(default)s, COCOA's)")
    what.add_argument("--seed", type=int, default=0, help="seed of the corpus and foil draws (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("explanations"), help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``exaug explain`` (:func:`run_explain`) and say where the PNGs went; returns the exit code."""
    paths = run_explain(args)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def _networks(args: argparse.Namespace, device: torch.device
              ) -> tuple[nn.Module, nn.Module, str | None, int, int, Any]:
    """``(classifier images -> logits, encoder, dataset name, image size, number of classes, run or None)``."""
    if (args.run is None) == (args.model is None):
        raise UsageError("pass exactly one of --run RUNDIR and --model NAME")
    if args.run is not None:
        from ..training import load_run

        run = load_run(args.run, device=device, trust=args.trust_checkpoint)
        return (run.classifier_model, run.model.encoder, run.config.dataset, args.image_size or run.image_size,
                run.num_classes, run)
    from ..models import create_model

    size = args.image_size or 32
    torch.manual_seed(args.seed)
    built = create_model(args.model, args.num_classes, image_size=size, pretrained=args.pretrained)
    built = built.to(device).eval()
    return built.as_classifier(), built.encoder, None, size, args.num_classes, None


def _dataset(args: argparse.Namespace, name: str, split: str, size: int, run: Any) -> Any:
    if run is not None and args.dataset in (None, run.config.dataset):
        return run.dataset(split)
    from ..data import build_dataset, dataset_stats
    from ..transforms import standard_view

    options = {"image_size": size} if name == "synthetic" else {}
    return build_dataset(name, args.data_root, split, standard_view(size, *dataset_stats(name)), **options)


def _images(args: argparse.Namespace, name: str, size: int, run: Any) -> tuple[Tensor, list[str]]:
    """Normalised images ``(B, C, H, W)`` and a short name per image."""
    if (args.image is not None and args.dataset is not None) or (args.image is None and args.dataset is None
                                                                  and run is None):
        raise UsageError("pass exactly one of --image PATH and --dataset NAME (or --run alone for its dataset)")
    if args.image is not None:
        from PIL import Image

        from ..data import dataset_stats
        from ..transforms import standard_view

        view = standard_view(size, *dataset_stats(name))
        images, names = [], []
        for path in args.image:
            if not path.is_file():
                raise UsageError(f"--image {str(path)!r} does not exist")
            try:
                with Image.open(path) as image:
                    images.append(view(image.convert("RGB")))
            except OSError as err:  # PIL's UnidentifiedImageError: not an image, or a truncated one
                raise UsageError(f"--image {str(path)!r} is not a readable image: {err}") from err
            names.append(path.stem)
        return torch.stack(images), names
    dataset = _dataset(args, name, args.split, size, run)
    for i in args.index:
        if not 0 <= i < len(dataset):
            raise UsageError(f"--index {i} is out of range for the {args.split} split ({len(dataset)} images)")
    return torch.stack([dataset[i][0] for i in args.index]), [f"{args.split}{i}" for i in args.index]


def _target_model(
    args: argparse.Namespace, classifier: nn.Module, encoder: nn.Module, images: Tensor, name: str, size: int,
    run: Any,
) -> tuple[nn.Module, Any, str]:
    """``(model to explain, targets, label for titles)``."""
    from .. import targets as T

    if args.explainer == "relax":
        # RELAX explains the encoder's representation itself: label-free by construction, targets are ignored.
        if args.target != "label-free":
            raise UsageError("--explainer relax is label-free: use --target label-free")
        return encoder, None, "RELAX"
    if args.target == "class":
        return classifier, args.class_index, "class" if args.class_index is None else f"class {args.class_index}"
    if args.target == "label-free":
        return T.RepresentationSimilarity.from_images(encoder, images), torch.arange(images.shape[0]), "label-free"
    if args.corpus_class is None:
        raise UsageError("--target cocoa needs --corpus-class C")
    if run is None and args.dataset is None:
        raise UsageError("--target cocoa draws its corpus and foil from a training set: pass --run or --dataset")
    train = _dataset(args, name, "train", size, run)
    try:
        corpus = T.sample_corpus(train, args.corpus_class, args.corpus_size, seed=args.seed)
        foil = T.sample_foil(train, args.foil_size, seed=args.seed + 1)
    except ValueError as err:
        raise UsageError(f"--corpus-class/--corpus-size/--foil-size: {err}") from err
    device = images.device
    return T.ContrastiveCorpusSimilarity(encoder, corpus.to(device), foil.to(device)), 0, \
        f"COCOA corpus class {args.corpus_class}"


def run_explain(args: argparse.Namespace) -> list[Path]:
    """Compute the maps described by ``args`` and write the PNGs; returns the written paths."""
    from ..data import dataset_stats
    from ..explainers import create_explainer, explainer_accepts
    from ..training.distributed import resolve_device

    with usage_errors():  # a RuntimeError here is a wrong --device, not a failed run
        device = resolve_device(args.device)
    classifier, encoder, run_dataset, size, num_classes, run = _networks(args, device)
    if args.class_index is not None and not 0 <= args.class_index < num_classes:
        raise UsageError(f"--class {args.class_index} is out of range: the classifier has {num_classes} classes")
    name = args.dataset or run_dataset or "imagenet"
    images, names = _images(args, name, size, run)
    images = images.to(device)
    model, targets, label = _target_model(args, classifier, encoder, images, name, size, run)
    options = dict(args.option)
    if args.target != "class" and "channel_reduction" not in options and explainer_accepts(args.explainer,
                                                                                          "channel_reduction"):
        # COCOA averages pixel attributions over channels with their sign: |.| would rank pixels that pull the
        # representation away from the target as high as those that pull it towards it (docs/cocoa.md).
        options["channel_reduction"] = "sum"
    try:
        explainer = create_explainer(args.explainer, model, **options)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--explainer {args.explainer} / --option: {err}") from err
    explanation = explainer.explain(images, targets)
    mean, std = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in dataset_stats(name))
    display = (images * std + mean).clamp(0, 1)
    titles = [f"{label}: {int(t)}" if args.target == "class" else label for t in explanation.targets.tolist()]
    return save_overlays(display, explanation.saliency, args.out, names, titles, args.explainer)


def save_overlays(
    display: Tensor, saliency: Tensor, out: Path, names: Sequence[str], titles: Sequence[str], explainer: str
) -> list[Path]:
    """Write ``<out>/<i>_<name>.png`` (image | overlay) per image and ``<out>/grid.png``.

    Args:
        display: images in ``[0, 1]``.
        saliency: maps in ``[0, 1]``.
        out: output folder (created).
        names: one short name per image, used in the file names and titles.
        titles: one overlay title per image (after ``"<explainer> / "``).
        explainer: the explainer's name, for the titles.

    Returns:
        The written paths, the grid last.

    Shape:
        - display: ``(B, 3, H, W)``
        - saliency: ``(B, 1, H, W)``
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    pictures = display.detach().cpu().permute(0, 2, 3, 1).numpy()
    maps = saliency.detach().cpu()[:, 0].numpy()
    written = []

    def draw(axes: Any, i: int) -> None:
        axes[0].imshow(pictures[i])
        axes[0].set_title(names[i], fontsize=8)
        axes[1].imshow(pictures[i])
        axes[1].imshow(maps[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1].set_title(f"{explainer} / {titles[i]}", fontsize=8)
        for ax in axes:
            ax.axis("off")

    for i in range(len(names)):
        fig, axes = plt.subplots(1, 2, figsize=(4, 2.2))
        draw(axes, i)
        path = out / f"{i:03d}_{names[i]}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    fig, axes = plt.subplots(len(names), 2, figsize=(4, 2.2 * len(names)), squeeze=False)
    for i in range(len(names)):
        draw(axes[i], i)
    path = out / "grid.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [*written, path]
