"""``evaluate_run``: the registered evaluation tasks on a trained run folder, in one batched pass.

The run is loaded with :func:`exaug.training.load_run`; its split is read once with the standard view (resize +
normalise, as validation saw it) and every selected task (:mod:`exaug.evaluation.tasks`) is updated on each
batch, so shared work (clean logits, FGSM images, embeddings) is done once. The numbers are exactly those of the
metric classes (:class:`~exaug.metrics.Accuracy`, :class:`~exaug.metrics.DropIncrease`, ...) fed the same
batches: this module only schedules the tasks, collects their results and writes them.

Outputs, in ``out`` (default ``<run>/eval``):

* ``eval.json``: every number, the settings that produced it, the run's identity and the package versions;
* ``eval.md``: the same as readable tables, with the figures linked (:mod:`exaug.evaluation.report`);
* figures: ``saliency_grid.png`` (originals, saliency overlay and masked view with its ExCon/ExConB routing,
  like the ExCon paper's Figure 1), ``reliability.png`` / ``reliability_fgsm.png``, ``tsne.png`` and
  ``insertion_deletion.png``.

The model is never modified (the metrics' isolation). ``METRICS``, ``EXPLANATION_METRICS`` and
``DEFAULT_OPTIONS`` are read from the task registry on every access, so a task registered later is included.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..explainers import explainer_uses_layer
from ..training.distributed import resolve_device
from ..training.loaders import validation_on_test_subset
from ..training.run import TrainedRun, load_run
from .annotations import object_masks
from .context import EvalBatch, EvalContext, build_run_explainer
from .figures import draw_saliency_grid, plot_saliency_grid
from .output import jsonable, versions, write_json, write_text
from .report import render_eval_markdown
from .tasks import get_task, list_tasks
from .tasks.registry import suggest

__all__ = [
    "DEFAULT_OPTIONS",
    "EXPLANATION_METRICS",
    "GRID_OPTIONS",
    "METRICS",
    "evaluate_run",
    "object_masks",
    "plot_saliency_grid",
    "render_eval_markdown",
    "resolve_metrics",
    "resolve_options",
]

#: Options of the saliency-grid figure (the ``grid`` section of ``options``).
GRID_OPTIONS: dict[str, Any] = {"images": 8}


def __getattr__(name: str) -> Any:
    # Derived from the registry at each access (PEP 562), so they never go stale when a plugin registers.
    if name == "METRICS":  # metric names accepted by ``metrics=`` and ``--metrics``, in report order
        return tuple(list_tasks())
    if name == "EXPLANATION_METRICS":  # tasks that score explanations
        return tuple(n for n in list_tasks() if get_task(n).measures_explanations)
    if name == "DEFAULT_OPTIONS":  # {task: {option: default}} and the ``grid`` section; a fresh copy
        return {**{n: copy.deepcopy(dict(get_task(n).options)) for n in list_tasks()}, "grid": dict(GRID_OPTIONS)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a metric selection: ``"all"``, ``"a,b,c"`` or a sequence of names.

    Returns:
        The selected names, deduplicated, in the order of :data:`METRICS`.

    Raises:
        ValueError: empty selection or unknown name (with the closest valid one).
    """
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    names = [m for m in names if m]
    valid = tuple(list_tasks())
    if not names:
        raise ValueError(f"no metric selected; choose 'all' or some of: {', '.join(valid)}")
    if "all" in names:
        return valid
    for name in names:
        get_task(name)  # raises with the closest name
    return tuple(m for m in valid if m in names)


def resolve_options(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """:data:`DEFAULT_OPTIONS` updated with ``options`` (unknown metric or option names raise with a suggestion)."""
    merged: dict[str, dict[str, Any]] = __getattr__("DEFAULT_OPTIONS")
    for section, values in (options or {}).items():
        if section not in merged:
            raise ValueError(f"unknown options section {section!r}.{suggest(section, list(merged))} "
                             f"Valid sections: {', '.join(merged)}")
        for key, value in values.items():
            if key not in merged[section]:
                valid = list(merged[section])
                raise ValueError(f"unknown {section} option {key!r}.{suggest(key, valid)} Valid: {', '.join(valid)}")
            merged[section][key] = value
    return merged


def _device(device: str | torch.device) -> torch.device:
    """:func:`~exaug.training.distributed.resolve_device`, with a usage error (``ValueError``) for a bad name."""
    try:
        return resolve_device(str(device))
    except RuntimeError as err:  # an unparsable name, or CUDA requested without CUDA
        raise ValueError(f"invalid device {str(device)!r}: {err}") from err


def evaluate_run(
    folder: str | Path | TrainedRun,
    metrics: str | Sequence[str] = "all",
    explainer: str | None = None,
    split: str = "test",
    samples: int | None = None,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    *,
    checkpoint: str = "best",
    explainer_layer: str | None = None,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    held_out: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run and write ``eval.json``, ``eval.md`` and figures.

    Args:
        folder: a run folder written by :class:`~exaug.training.Trainer`, or an already loaded
            :class:`~exaug.training.TrainedRun` (then ``checkpoint`` and ``device`` are ignored).
        metrics: ``"all"``, ``"a,b,c"`` or a list of names from :data:`METRICS` (registered tasks).
        explainer: a registered explainer name; default: the run's own explainer, layer and options.
            Another name is used at the run's resolved layer when it takes one.
        split: ``"test"`` or ``"train"`` (read with the standard view: resize + normalise).
        samples: evaluate a seeded, class-balanced subset of this many images (``None``: the whole split).
        out: output folder (default ``<run>/eval``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"``.
        batch_size: images per batch (every metric is batched; insertion/deletion also chunks its step images).
        progress: show a tqdm progress bar over the batches.
        checkpoint: ``"best"``, ``"last"`` or a ``.pt`` path (see :func:`~exaug.training.load_run`).
        explainer_layer: override the explainer's target layer (dotted path in the encoder + classifier model).
        seed: seed of every random draw (infidelity perturbations, PGD start, noise corruptions, t-SNE).
        options: per-metric overrides of :data:`DEFAULT_OPTIONS`, e.g. ``{"infidelity": {"n_perturb_samples": 4}}``.
        held_out: leave out the test images the run validated on (and chose its best checkpoint on). ``None``
            (default): whenever the run validated on a subset of the test split (``--eval-samples``); ``True``
            requires it; ``False`` uses the whole split. Recorded as ``evaluation.held_out``.

    Returns:
        The content of ``eval.json``: ``{"run", "evaluation", "explainer", "settings", "metrics", "figures",
        "notes", "timing", "versions", "files"}``. Accuracies are fractions in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``folder`` is not a run folder.
        ValueError: unknown metric, option, explainer or split, or invalid ``samples`` / ``batch_size``.
        exaug.utils.checkpoint.CheckpointError: missing or corrupt checkpoint.
    """
    selected = resolve_metrics(metrics)
    opts = resolve_options(options)
    if explainer is not None:
        explainer_uses_layer(explainer)  # fails fast, with the closest name, before anything is loaded
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise ValueError(f"samples must be a positive int or None, got {samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    started = time.time()
    if isinstance(folder, TrainedRun):
        run, checkpoint = folder, "in-memory"
        dev = next(run.classifier_model.parameters()).device
    else:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"run folder {str(folder)!r} does not exist")
        dev = _device(device)
        run = load_run(folder, checkpoint=checkpoint, device=dev)
    out_dir = Path(out) if out is not None else run.folder / "eval"
    if held_out is None:
        held_out = split == "test" and validation_on_test_subset(run.config)
    dataset = run.dataset(split, samples, held_out=held_out)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"split {split!r} of {run.config.dataset!r} is empty")

    needs_explainer = any("explainer" in get_task(m).requires for m in selected)
    explainer_obj, explainer_info = (build_run_explainer(run, explainer, explainer_layer) if needs_explainer
                                     else (None, None))
    ctx = EvalContext(run, dataset, explainer=explainer_obj, seed=seed, batch_size=batch_size, device=dev,
                      progress=progress)
    active = list(selected)
    needs_masks = [m for m in active if "object_masks" in get_task(m).requires]
    if needs_masks and object_masks(dataset, [0], (run.image_size, run.image_size)) is None:
        active = [m for m in active if m not in needs_masks]
        ctx.notes += [f"{name} skipped: the {run.config.dataset!r} dataset provides no object masks or boxes "
                      "(synthetic and tinyimagenet do)" for name in needs_masks]
    if "accuracy" in active and split == "train":
        ctx.notes.append("kNN accuracy on the train split: the kNN bank contains the evaluated images themselves")
    tasks = [get_task(name)(ctx, opts[name]) for name in active]

    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    loader = ctx.loader(dataset)
    first = 0
    for number, (images, labels) in enumerate(ctx.bar(loader, f"evaluate {run.folder.name}", total=len(loader))):
        batch = EvalBatch(ctx, number, first, images, labels)
        first += images.shape[0]
        for task in tasks:
            tick = time.perf_counter()
            task.update(batch)
            task.seconds += time.perf_counter() - tick
        if number == 0 and ctx.augment is not None:
            figures.update(draw_saliency_grid(ctx, batch, out_dir, opts["grid"]["images"]))

    results: dict[str, Any] = {}
    for task in tasks:
        tick = time.perf_counter()
        try:
            results[task.name] = task.finish()
        except ValueError as err:  # e.g. no image with a known box: report it, keep the other metrics
            ctx.notes.append(f"{task.name} not computed: {err}")
            continue
        figures.update(task.figures(out_dir))
        task.seconds += time.perf_counter() - tick

    c = run.config
    settings = {task.name: jsonable(task.settings) for task in tasks}
    if ctx.augment is not None:
        settings["grid"] = jsonable(opts["grid"])
    payload: dict[str, Any] = {
        "run": {"folder": str(run.folder), "method": c.method, "seed": c.seed, "dataset": c.dataset,
                "model": c.model, "width": c.width, "epochs": c.epochs, "checkpoint": checkpoint,
                "checkpoint_epoch": run.epoch, "num_classes": run.num_classes, "image_size": run.image_size},
        "evaluation": {"metrics": list(selected), "split": split, "samples": samples,
                       "images": len(dataset), "batch_size": batch_size, "device": str(dev),  # type: ignore[arg-type]
                       "seed": seed, "held_out": held_out},
        "explainer": explainer_info,
        "settings": settings,
        "metrics": results,
        "figures": figures,
        "notes": ctx.notes,
        "timing": {"total_seconds": time.time() - started, **{t.name: t.seconds for t in tasks}},
        "versions": versions(),
        "files": {"json": "eval.json", "markdown": "eval.md"},
    }
    write_json(out_dir / "eval.json", payload)
    write_text(out_dir / "eval.md", render_eval_markdown(payload))
    return payload
