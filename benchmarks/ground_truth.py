"""Ground-truth study: do explanation-driven methods move Grad-CAM maps onto the object, and off a shortcut?

Synthetic shapes (:class:`exaug.data.SyntheticShapes`) have exact object masks, and an optional spurious cue: a
corner patch whose colour names the class in 90% of the training images (``--cue-strength``) and is random at test
time. Every method is trained in two settings, ``nocue`` and ``cue``, for 5 seeds, and each run is scored on
held-out test images (the first ``--val-samples`` test images are its validation set, which picks its best
checkpoint; the evaluated ones come after them):

* top-1 on the test split (random cue in the ``cue`` setting), and on the same images with the cue *flipped*
  (``test_cue="flipped"``: the patch always names another class than the label; the images are otherwise
  identical), which a model that learned the shortcut fails;
* pointing game, relevance mass and relevance rank accuracy (Arras et al. 2022) of Grad-CAM maps of the true label
  against the object masks;
* in the ``cue`` setting, the relevance mass and pointing game of Grad-CAM maps of the *predicted* class against the
  cue patch, on the flipped images: how much of the saliency behind a decision sits on the shortcut (lower is
  better; the patch is 1/64 of the image, so a map that ignores it scores about 0.016);
* the model-parameter randomisation sanity check (Adebayo et al. 2018), cascading from the top: Spearman and SSIM
  similarity of the maps to the originals once every layer group (``classifier.linear``, ``encoder.layer4``, ...,
  ``encoder.conv1``) is re-initialised, the last step of the curve (lower is better: the map depends on the
  weights; the whole curve is in each run's ``eval/eval.json``).

Every run of a grid is explained identically: Grad-CAM (with ReLU) at the same layer (``--explainer-layer``;
default the paper's ``layer2`` convolution of the ResNet-18, a 16x16 map), whatever explainer the method trained
with. Tables: mean ± std over seeds per method, and paired differences (same seed) against CE for every method
and against SupCon for the contrastive ones (ExCon, ExConB), ± SEM with the number of seeds, ``~`` marking a
difference within 2 SEM (:mod:`exaug.evaluation.compare`).

Budget (default): 6 shape classes at 32x32, a CIFAR ResNet-18 of width 0.0625 (4 to 32 channels), 1,000 training
images, 10 epochs at batch 64 (lr 0.125, the 0.5 x batch / 256 of SupContrast), temperature 0.1; ExConB uses
explanations after a quarter of the epochs, ExCon from the start (as ``cifar10_cpu.py``). 200 validation and 500
evaluated test images, 16 images for the sanity check. That is 14 methods x 2 settings x 5 seeds = 140 runs, so a
CE run gets about 20 s of one core. The small width buys epochs: on a trial, CE at width 0.0625 for 16 epochs of
1,200 images reached 71% top-1 (6 classes, chance 17%) where width 0.125 for 8 epochs (the same cost) reached 40%.
Run ``--estimate-only`` first: it times every method on 2 steps and prints the estimate for this machine (aim:
about an hour on 2 idle cores with ``--jobs 2``; lower ``--train-samples`` / ``--epochs`` or ``--seeds`` if not).
On a 2-core machine shared with other work (load average ~6.5) the 12-epoch version of this budget was estimated
at 142 min, so about 120 min for 10 epochs there, i.e. roughly 45-55 min on idle cores (2.5-3x faster).

Views: every method trains on lighter random views than SupContrast's (``--view-crop-min 0.6``, no colour jitter
or grayscale; ``TrainConfig.view_crop_min`` / ``view_colour``). With SupContrast's views (crops of 20-100 %, colour
jitter, grayscale), a 1-seed trial of this budget left SupCon at 18 % top-1 (chance 17 %) and its loss near the
collapsed value, and the crops and hue jitter often removed or recoloured the corner cue; with the lighter views
SupCon reached 24 % and CE's Grad-CAM put 0.07 of its mass on the cue (0.016 by chance). ``--view-crop-min 0.2
--view-colour`` restores SupContrast's views. Even so, CE ignored the cue in those trials (top-1 with the cue
flipped within 1.5 points of random-cue top-1, at cue strength 0.9 and 1.0): the shapes are easy enough to learn
directly, and the patch covers 1/64 of the image.

    python benchmarks/ground_truth.py --jobs 2 --estimate-only        # time a few steps, print the estimate
    nohup python benchmarks/ground_truth.py --jobs 2 > benchmarks/runs/ground_truth.log 2>&1 &   # resumable
    python benchmarks/ground_truth.py --methods ce exconb --seeds 3    # a subset of the grid
    python benchmarks/ground_truth.py --quick --out /tmp/gt --results-dir /tmp/res   # smoke run, seconds

Runs live in ``--out/<setting>/<method>/seed<k>``; their evaluations in ``eval/`` (random cue) and ``eval_flipped/``
(flipped cue, ``cue`` setting only). Finished runs and evaluations are skipped and interrupted runs resume from
``last.pt``, so re-running the same command continues the study (a folder trained with other options is an
error; evaluations are not re-run when only evaluation flags change: delete the ``eval*`` folders). Results: ``<results-dir>/ground_truth.json`` and
``ground_truth.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_cpu import estimate_first, start_epoch  # noqa: E402
from grid import (  # noqa: E402
    GridRun, add_study_arguments, check_same_run, finish_study_arguments, fit_config, mean_std, prepare_config,
    timed_epoch, write_results,
)

from exaug.evaluation import evaluate_run  # noqa: E402
from exaug.evaluation.compare import paired_differences, paired_table, summary_tables  # noqa: E402
from exaug.models import default_explainer_layer  # noqa: E402
from exaug.training import METHODS, TrainConfig, load_run  # noqa: E402

NAME = "ground_truth"
#: The study's methods in table order: CE (the reference), the seeds' methods, then the saliency-guided family and
#: its random controls, as far as the trainer offers them.
STUDY_METHODS: tuple[str, ...] = tuple(m for m in (
    "ce", "supcon", "excon", "exconb", "edda", "cgc", "cutmix", "mixup", "saliencymix", "keepcutout",
    "keepautoaugment", "attentive_cutmix", "snapmix", "sgt") if m in METHODS)
#: Compared with SupCon as well as with CE (SupCon is what they add explanations to).
CONTRASTIVE: tuple[str, ...] = ("excon", "exconb")
SETTINGS: tuple[str, ...] = ("nocue", "cue")
MODEL = "resnet18"
QUICK = {"methods": ["ce", "supcon", "exconb"], "seeds": 2, "epochs": 1, "train_samples": 32, "val_samples": 8,
         "test_samples": 8, "batch_size": 16, "width": 0.0625, "mprt_images": 2}

#: The evaluations of a run: ``(folder, metrics, dataset options added to the run's, task options, settings)``.
#: ``eval_flipped`` scores the cue patch (``mask_of="cue"``) as the localisation region, for the predicted class.
EVALUATIONS: tuple[tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any], tuple[str, ...]], ...] = (
    ("eval", ("accuracy", "localisation", "randomisation"), {}, {}, SETTINGS),
    ("eval_flipped", ("accuracy", "localisation"), {"test_cue": "flipped", "mask_of": "cue"},
     {"localisation": {"target": "predicted"}}, ("cue",)),
)

#: ``(key, header, better, digits, scientific)`` columns of the two tables (``exaug.evaluation.compare.Column``).
ACCURACY_COLUMNS = (
    ("top1", "top-1 (%)", "higher", 2, False),
    ("top1_flipped", "top-1 flipped cue (%)", "higher", 2, False),
    ("cue_mass", "cue relevance mass", "lower", 3, False),
    ("cue_pointing", "cue pointing game", "lower", 3, False),
)
EXPLANATION_COLUMNS = (
    ("pointing_game", "pointing game", "higher", 3, False),
    ("relevance_mass", "relevance mass", "higher", 3, False),
    ("relevance_rank", "relevance rank", "higher", 3, False),
    ("mprt_spearman", "MPRT Spearman", "lower", 3, False),
    ("mprt_ssim", "MPRT SSIM", "lower", 3, False),
)
LEGEND = ("top-1: held-out test images (random cue in the cue setting); flipped cue: the same images with a cue "
          "that never names the label. Pointing game / relevance mass / relevance rank: Grad-CAM of the label "
          "against the object mask (chance: the object's area fraction). Cue relevance mass / pointing game: "
          "Grad-CAM of the predicted class against the cue patch on the flipped-cue images (1/64 of the image). "
          "MPRT: similarity of the maps to the originals once every layer is re-initialised (cascading from the "
          "top), lower is better.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(STUDY_METHODS), choices=STUDY_METHODS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--val-samples", type=int, default=200, help="test images validated on every epoch")
    parser.add_argument("--classes", type=int, default=6, help="shape classes (2 to 12)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--cue-strength", type=float, default=0.9,
                        help="share of training images whose cue names their label (cue setting)")
    parser.add_argument("--explainer-layer", default=None,
                        help="Grad-CAM layer of every evaluation (default: the model's default layer)")
    parser.add_argument("--mprt-images", type=int, default=16, help="images of the randomisation sanity check")
    parser.add_argument("--view-crop-min", type=float, default=0.6,
                        help="smallest crop area of the random views (SupContrast: 0.2; see 'Views' above)")
    parser.add_argument("--view-colour", action=argparse.BooleanOptionalAction, default=False,
                        help="colour jitter and grayscale in the random views (SupContrast: on; see 'Views')")
    add_study_arguments(parser, name=NAME, seeds=5, train_samples=1000, test_samples=500, width=0.0625,
                        max_minutes=60.0, quick_help="smoke run: 3 methods x 2 settings x 2 seeds x 1 "
                        "epoch on a few dozen images, seconds")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # defaults only: `--quick --epochs 2` still means 2 epochs
    args = finish_study_arguments(parser, parser.parse_args(argv), ("seeds", "epochs", "train_samples", "val_samples",
                                                                    "test_samples", "batch_size", "jobs", "mprt_images"))
    if args.explainer_layer is None:
        args.explainer_layer = default_explainer_layer(MODEL, args.image_size)
    return args


def dataset_options(args: argparse.Namespace, setting: str) -> dict[str, Any]:
    """The synthetic dataset's options in ``setting`` (``TrainConfig.dataset_options``)."""
    cue = {"spurious": True, "spurious_strength": args.cue_strength} if setting == "cue" else {}
    return {"num_classes": args.classes, **cue}


def make_config(args: argparse.Namespace, setting: str, method: str, seed: int, out: Path) -> TrainConfig:
    return TrainConfig(
        method=method, dataset="synthetic", dataset_options=dataset_options(args, setting), model=MODEL,
        width=args.width, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        temperature=0.1, exp_start_epoch=start_epoch(method, args.epochs), train_samples=args.train_samples,
        eval_samples=args.val_samples, workers=0, device="cpu", seed=seed, quiet=True, out=str(out),
        view_crop_min=args.view_crop_min, view_colour=args.view_colour,
    )


def build_grid(args: argparse.Namespace) -> list[GridRun]:
    return [GridRun(setting, m, s, make_config(args, setting, m, s, args.out / setting / m / f"seed{s}"))
            for setting in args.settings for m in args.methods for s in range(args.seeds)]


def eval_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What every evaluation of the grid shares (plain values, sent to worker processes)."""
    return {"samples": args.test_samples, "layer": args.explainer_layer, "mprt_images": args.mprt_images,
            "knn_train_samples": min(args.train_samples, 500)}


def evaluations(setting: str) -> list[tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]]:
    return [(folder, metrics, data, options) for folder, metrics, data, options, where in EVALUATIONS
            if setting in where]


def evaluate(folder: Path, setting: str, settings: Mapping[str, Any]) -> dict[str, float]:
    """Write the run's missing evaluations (``<folder>/<eval folder>/eval.json``); their seconds by folder."""
    seconds: dict[str, float] = {}
    for name, metrics, data, options in evaluations(setting):
        out = folder / name
        if (out / "eval.json").is_file():
            continue
        started = time.time()
        run = load_run(folder)
        # Same run, same held-out test indices; only the cue and the scored region change.
        run.config = dataclasses.replace(run.config, dataset_options={**run.config.dataset_options, **data})
        task_options = {"accuracy": {"knn_train_samples": settings["knn_train_samples"]},
                        "randomisation": {"images": settings["mprt_images"]}, **options}
        evaluate_run(run, metrics=list(metrics), explainer="gradcam", explainer_layer=settings["layer"],
                     samples=settings["samples"], out=out, progress=False,
                     options={k: v for k, v in task_options.items() if k in metrics})
        seconds[name] = time.time() - started
    return seconds


def train_and_evaluate(run: GridRun, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Train (or resume) ``run`` unless finished, then evaluate it unless evaluated; what was done."""
    done: dict[str, Any] = {"run": run.name, "trained": False}
    config = prepare_config(run.config)
    if config is not None:
        summary = fit_config(run.name, run.folder, config, log=partial(print, flush=True))
        done.update(trained=True, train_seconds=summary["seconds"])
    done["eval_seconds"] = evaluate(run.folder, run.setting, settings)
    return done


def estimate(args: argparse.Namespace, grid: Sequence[GridRun]) -> dict[str, Any]:
    """Time one epoch of every method on 2 batches (cue setting, which costs the same as no cue) and both
    evaluations on a few images, and scale them to the budget (seconds). Warm-up makes it err on the slow side."""
    steps_full = max(1, args.train_samples // args.batch_size)
    steps_calib = min(2, steps_full)
    scale = steps_full / steps_calib
    per_epoch: dict[str, float] = {}
    settings = eval_settings(args)
    probe = min(args.test_samples, 2 * args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        for method in dict.fromkeys(r.method for r in grid):
            config = dataclasses.replace(make_config(args, "cue", method, 0, Path(tmp) / method), epochs=1,
                                         exp_start_epoch=0, train_samples=steps_calib * args.batch_size,
                                         eval_samples=max(1, round(args.val_samples / scale)))
            per_epoch[method] = timed_epoch(config) * scale
        seconds = evaluate(Path(tmp) / next(iter(per_epoch)), "cue", {**settings, "samples": probe})
    # Linear in the evaluated images (the kNN bank and the sanity check do not grow: errs on the slow side).
    eval_seconds = {name: s * args.test_samples / probe for name, s in seconds.items()}
    runs = {r.name: per_epoch[r.method] * args.epochs + sum(eval_seconds[name] for name, *_ in evaluations(r.setting))
            for r in grid}
    total = sum(runs.values())
    # The printed per-run evaluation time (cifar10_cpu.print_estimate) is the mean over the grid's runs.
    mean_eval = sum(runs[r.name] - per_epoch[r.method] * args.epochs for r in grid) / max(1, len(grid))
    return {"seconds_per_epoch": per_epoch, "eval_seconds_per_run": mean_eval, "eval_seconds": eval_seconds,
            "seconds_per_run": runs,
            "total_seconds": total, "wall_seconds": max(total / args.jobs, max(runs.values(), default=0.0)),
            "jobs": args.jobs, "steps_per_epoch": steps_full, "threads": torch.get_num_threads()}


def run_grid(grid: Sequence[GridRun], args: argparse.Namespace, timing: Mapping[str, Any] | None) -> list[dict]:
    """Train and evaluate every unfinished run, ``args.jobs`` at a time (longest first, so the jobs end together)."""
    settings = eval_settings(args)
    if args.jobs == 1:
        return [train_and_evaluate(run, settings) for run in grid]
    cost = (timing or {}).get("seconds_per_run", {})
    ordered = sorted(grid, key=lambda r: -cost.get(r.name, 0.0))
    print(f"running {len(grid)} runs, {args.jobs} at a time with {args.threads} thread(s) each", flush=True)
    # spawn: a forked child would inherit the parent's OpenMP thread pool, which is not fork-safe.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(args.threads,)) as pool:
        futures = {run.name: pool.submit(train_and_evaluate, run, settings) for run in ordered}
        return [futures[run.name].result() for run in grid]


def _metrics(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name / "eval.json"
    return json.loads(path.read_text())["metrics"] if path.is_file() else {}


def _last(values: Sequence[float | None] | None) -> float | None:
    """The similarity after the last randomisation step (the most randomised model)."""
    return values[-1] if values else None


def collect(run: GridRun) -> dict[str, float | None]:
    """One run's numbers (accuracies in percent; ``None`` where the setting has no such number)."""
    main, flipped = _metrics(run.folder, "eval"), _metrics(run.folder, "eval_flipped")
    accuracy, flipped_accuracy = main.get("accuracy", {}), flipped.get("accuracy", {})
    objects, cue = main.get("localisation", {}), flipped.get("localisation", {})
    sanity = main.get("randomisation", {})
    return {
        "top1": None if "top1" not in accuracy else 100.0 * accuracy["top1"],
        "top1_flipped": None if "top1" not in flipped_accuracy else 100.0 * flipped_accuracy["top1"],
        "cue_mass": cue.get("relevance_mass"), "cue_pointing": cue.get("pointing_game"),
        **{key: objects.get(key) for key in ("pointing_game", "relevance_mass", "relevance_rank")},
        "mprt_spearman": _last(sanity.get("spearman")), "mprt_ssim": _last(sanity.get("ssim")),
    }


def seed_tables(grid: Sequence[GridRun], values: Mapping[str, Mapping[str, float | None]],
                setting: str) -> dict[str, dict[str, dict[int, float | None]]]:
    """``{column key: {method: {seed: value}}}`` of one setting (the pairing input of ``compare``)."""
    keys = [key for key, *_ in (*ACCURACY_COLUMNS, *EXPLANATION_COLUMNS)]
    tables: dict[str, dict[str, dict[int, float | None]]] = {key: {} for key in keys}
    for run in grid:
        if run.setting == setting:
            for key in keys:
                tables[key].setdefault(run.method, {})[run.seed] = values[run.name][key]
    return tables


def references(tables: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """``(reference, methods compared with it)``: CE for every method, SupCon for the contrastive ones."""
    methods = list(next(iter(tables.values())))
    out = [("ce", methods)] if "ce" in methods else []
    contrastive = [m for m in CONTRASTIVE if m in methods]
    if "supcon" in methods and contrastive:
        out.append(("supcon", ["supcon", *contrastive]))
    return out


def render_setting(tables: Mapping[str, Mapping[str, Any]], setting: str, args: argparse.Namespace) -> list[str]:
    title = ("No cue" if setting == "nocue" else
             f"Spurious cue (names the label in {args.cue_strength:.0%} of the training images)")
    lines = [f"## {title}", ""]
    for heading, columns in (("Accuracy and the shortcut", ACCURACY_COLUMNS),
                             ("Explanations: object localisation and sanity check", EXPLANATION_COLUMNS)):
        shown = [c for c in columns if any(v is not None for seeds in tables[c[0]].values() for v in seeds.values())]
        if not shown:
            continue
        lines += [f"### {heading}", "", summary_tables(tables, shown), ""]
        for reference, methods in references(tables):
            subset = {key: {m: tables[key][m] for m in methods} for key in tables}
            lines += paired_table(subset, reference, shown)
    return lines


def render(all_tables: Mapping[str, Mapping[str, Any]], args: argparse.Namespace) -> str:
    head = (f"Synthetic shapes ({args.classes} classes, {args.image_size}x{args.image_size}), CIFAR ResNet-18 "
            f"x{args.width}, {args.train_samples} training images, {args.epochs} epochs, batch {args.batch_size}, "
            f"lr {args.lr:g}, t 0.1; validated on {args.val_samples} test images, evaluated on {args.test_samples} "
            f"others; Grad-CAM at `{args.explainer_layer}`; sanity check on {args.mprt_images} images; random views: "
            f"crops of {100 * args.view_crop_min:.0f}-100 %, "
            f"{'colour jitter and grayscale' if args.view_colour else 'no colour jitter or grayscale'}.")
    lines = ["# Ground-truth study", "", head, "", LEGEND, ""]
    for setting, tables in all_tables.items():
        lines += render_setting(tables, setting, args)
    return "\n".join(lines)


def paired_json(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{reference: {column key: {method: PairedDifference as a dict}}}`` of one setting."""
    out: dict[str, Any] = {}
    for reference, methods in references(tables):
        out[reference] = {key: {m: dataclasses.asdict(d) for m, d in
                                paired_differences({m: tables[key][m] for m in methods}, reference).items()}
                          for key in tables}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    grid = build_grid(args)
    for run in grid:  # a folder trained with another budget is an error, never silently reported
        check_same_run(run.config)
    pending = [r for r in grid if not all((r.folder / name / "eval.json").is_file()
                                          for name, *_ in evaluations(r.setting))]
    timing = estimate_first(args, grid, pending, estimate)
    if args.estimate_only:
        return {"estimate": timing}
    started = time.time()
    done = run_grid(pending, args, timing)
    values = {run.name: collect(run) for run in grid}
    all_tables = {setting: seed_tables(grid, values, setting) for setting in args.settings}
    text = render(all_tables, args)
    print("\n" + text)
    budget = {k: getattr(args, k) for k in ("methods", "settings", "seeds", "epochs", "train_samples", "val_samples",
                                            "test_samples", "batch_size", "lr", "width", "classes", "image_size",
                                            "cue_strength", "explainer_layer", "mprt_images", "view_crop_min",
                                            "view_colour", "quick", "jobs", "threads")}
    summary = {setting: {key: {m: mean_std(list(seeds.values())) for m, seeds in by_method.items()}
                         for key, by_method in tables.items()} for setting, tables in all_tables.items()}
    paths = write_results(args.results_dir, NAME, {
        "budget": budget, "estimate": timing, "wall_seconds": time.time() - started, "done": done,
        "summary": summary, "paired": {s: paired_json(t) for s, t in all_tables.items()},
        "runs": {run.name: {"folder": str(run.folder), **values[run.name]} for run in grid},
    }, text)
    print(f"wrote {paths[0]} and {paths[1]}")
    return {"summary": summary, "estimate": timing, "done": done, "paths": [str(p) for p in paths]}


if __name__ == "__main__":
    main()
