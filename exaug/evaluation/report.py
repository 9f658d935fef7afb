"""``eval.md``: the content of ``eval.json`` as readable tables, with the figures linked.

The report is rendered from ``eval.json`` alone, so it can be re-rendered without re-evaluating. The built-in
tasks are laid out here (the explanation metrics share one table); a task added by a plugin gets the section
its :meth:`~exaug.evaluation.tasks.EvaluationTask.markdown` renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..metrics import ContentHeatmap, Infidelity, InsertionDeletion
from .output import fmt, md_table
from .tasks import get_task, list_tasks

__all__ = ["render_eval_markdown"]

#: Tasks whose sections are laid out by this module.
BUILTIN_SECTIONS: tuple[str, ...] = ("accuracy", "drop_increase", "infidelity", "insertion_deletion",
                                     "content_heatmap", "calibration", "adversarial", "tsne")

CAPTIONS: dict[str, str] = {
    "saliency_grid": "Originals (true class), saliency overlay (of the class the run's masking explains, its "
                     "`mask_target`; title: the prediction on the original), masked view with its routing: "
                     "green = classified correctly (a positive), red = misclassified (a background negative in "
                     "ExConB, dropped in ExCon).",
    "reliability": "Reliability diagram, clean images.",
    "reliability_fgsm": "Reliability diagram under FGSM.",
    "insertion_deletion": "Mean insertion and deletion curves.",
    "tsne": "t-SNE of encoder features: crosses are originals, dots their explanation-masked views.",
}


def _eps(value: float) -> str:
    return f"{value * 255:g}/255"


def _better(direction: bool | None) -> str:
    """The "better" column from a metric's declared ``higher_is_better``."""
    return {True: "higher", False: "lower", None: "-"}[direction]


def _accuracy(a: Mapping[str, Any], o: Mapping[str, Any]) -> list[str]:
    rows = [[f"top-{k} (%)", fmt(a.get(f"top{k}"), 2, scale=100)] for k in o["ks"]]
    rows.append([f"kNN top-1 (%) (k={o['knn_k']}, T={o['knn_temperature']}, {a['knn_train_images']} train images)",
                 fmt(a["knn_top1"], 2, scale=100)])
    return ["## Accuracy", "", "Linear classifier on the encoder; kNN on encoder features.", "",
            *md_table(["metric", "value"], rows), ""]


def _explanation(m: Mapping[str, Any], s: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if "drop_increase" in m:
        d = m["drop_increase"]
        rows = [[f"{float(q):.2f}", fmt(v["drop_percent"]), fmt(v["drop_mag"]), fmt(v["increase_percent"]),
                 fmt(v["increase_mag"])] for q, v in d["keep"].items()]
        lines += [f"Drop / increase (keep the most salient fraction, fill `{s['drop_increase']['fill']}`; "
                  f"{d['n_flat']} flat maps). Drop lower, increase higher is better.", "",
                  *md_table(["keep", "drop %", "drop mag", "increase %", "increase mag"], rows), ""]
    rows = []
    if "infidelity" in m:
        o = s["infidelity"]
        rows.append([f"infidelity ({o['perturbation']}, std {o['noise_std']}, {o['n_perturb_samples']} draws, "
                     f"{o['output']}, normalize={o['normalize']})", _better(Infidelity.higher_is_better),
                     fmt(m["infidelity"]["mean"], 3, scientific=True)])
    if "insertion_deletion" in m:
        o, directions = s["insertion_deletion"], InsertionDeletion.higher_is_better
        for mode in ("insertion", "deletion"):
            rows.append([f"{mode} AUC ({o['steps']} steps, baseline {o['baseline']})", _better(directions[mode]),
                         fmt(m["insertion_deletion"][f"{mode}_auc"], 4)])
    if "content_heatmap" in m:
        rows.append([f"Content Heatmap (saliency of the {s['content_heatmap']['target']} class, "
                     f"{m['content_heatmap']['images']} images)", _better(ContentHeatmap.higher_is_better),
                     fmt(m["content_heatmap"]["mean"], 4)])
    if rows:
        lines += [*md_table(["metric", "better", "value"], rows), ""]
    return ["## Explanation quality", "", *lines] if lines else []


def _calibration(cal: Mapping[str, Any], o: Mapping[str, Any]) -> list[str]:
    rows = [["clean", fmt(cal["accuracy_clean"], 2, scale=100), fmt(cal["ece_clean"], 4)],
            [f"FGSM eps {_eps(o['fgsm_eps'])}", fmt(cal["accuracy_fgsm"], 2, scale=100), fmt(cal["ece_fgsm"], 4)]]
    rows += [[f"{name} (severity {o['severity']})", fmt(v["accuracy"], 2, scale=100), fmt(v["ece"], 4)]
             for name, v in cal["corruptions"].items()]
    if cal["corruptions"]:
        rows.append(["corruptions, mean", fmt(cal["accuracy_corrupted_mean"], 2, scale=100),
                     fmt(cal["ece_corrupted_mean"], 4)])
    return ["## Calibration", "", f"Expected calibration error, {o['n_bins']} equal-width bins (lower is better).",
            "", *md_table(["condition", "accuracy (%)", "ECE"], rows), ""]


def _adversarial(adv: Mapping[str, Any], o: Mapping[str, Any]) -> list[str]:
    rows = [["clean", fmt(adv["clean"], 2, scale=100)],
            [f"FGSM eps {_eps(o['eps'])}", fmt(adv["fgsm"], 2, scale=100)],
            [f"PGD eps {_eps(o['eps'])}, step {_eps(o['pgd_alpha'])}, {o['pgd_steps']} steps",
             fmt(adv["pgd"], 2, scale=100)]]
    return ["## Adversarial robustness", "", *md_table(["attack", "accuracy (%)"], rows), ""]


def _masked_views(t: Mapping[str, Any]) -> list[str]:
    return ["## Masked views", "",
            f"With the run's masking rule, {fmt(t['masked_correct'], 1, scale=100)}% of the masked views "
            f"are classified correctly (positives); they keep {fmt(t['kept_area'], 1, scale=100)}% of the "
            f"pixels on average. The t-SNE shows {t['images']} originals and their masked views.", ""]


def render_eval_markdown(result: Mapping[str, Any]) -> str:
    """``eval.md`` from the content of ``eval.json`` (so a report can be re-rendered without re-evaluating).

    Args:
        result: what :func:`~exaug.evaluation.evaluate_run` returned (or ``json.load`` of ``eval.json``).

    Returns:
        The Markdown text.
    """
    r, e, m, s = result["run"], result["evaluation"], result["metrics"], result["settings"]
    ex = result.get("explainer")
    lines = [f"# Evaluation of `{Path(r['folder']).name}`", ""]
    explained = "" if ex is None else f", explainer `{ex['name']}`" + (
        f" at `{ex['target_layer']}`" if ex.get("target_layer") else "")
    lines += [
        f"Method **{r['method']}** (seed {r['seed']}), {r['dataset']} / {r['model']} x{r['width']}, checkpoint "
        f"`{r['checkpoint']}` (after epoch {r['checkpoint_epoch']} of {r['epochs']}). Split `{e['split']}`, "
        f"{e['images']} images{' not used for validation' if e.get('held_out') else ''}{explained}. "
        f"Evaluated on {e['device']} in {result['timing']['total_seconds']:.1f} s (seed {e['seed']}).",
        "",
    ]
    if "accuracy" in m:
        lines += _accuracy(m["accuracy"], s["accuracy"])
    lines += _explanation(m, s)
    if "calibration" in m:
        lines += _calibration(m["calibration"], s["calibration"])
    if "adversarial" in m:
        lines += _adversarial(m["adversarial"], s["adversarial"])
    if "tsne" in m:
        lines += _masked_views(m["tsne"])
    registered = set(list_tasks())
    for name in m:
        if name not in BUILTIN_SECTIONS and name in registered:  # a plugin task renders its own section
            lines += get_task(name).markdown(m[name], s.get(name, {}))
    figures = result.get("figures", {})
    if figures:
        lines += ["## Figures", ""]
        for key, file in figures.items():
            lines += [f"![{key}]({file})", "", CAPTIONS.get(key, ""), ""]
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines).rstrip("\n") + "\n"
