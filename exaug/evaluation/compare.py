"""``compare_runs``: several evaluated runs side by side, one row per method, in the ExCon paper's format.

Each run folder contributes:

* ``config.json``: method and seed (runs are grouped by method);
* ``summary.json``: the best validation top-1 of training;
* ``metrics.jsonl``: the per-epoch validation top-1, for the training stability of a method with several seeds
  (:func:`exaug.metrics.training_stability`);
* ``eval/eval.json`` (written by :func:`exaug.evaluation.evaluate_run`): test top-1, drop / increase at keep 0.45,
  infidelity, ECE clean and under FGSM. A run that was not evaluated shows ``n/a`` there, with a hint; it is
  never evaluated implicitly (that can take long and would pick settings for you).

A method with several runs shows ``mean ± std`` over them (population std, ``ddof = 0``, like
:func:`~exaug.metrics.training_stability`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..metrics import training_stability
from ..training.logger import read_metrics
from .output import fmt, md_table, write_json, write_text

__all__ = ["COMPARE_COLUMNS", "DROP_KEEP", "compare_runs", "read_run_record"]

#: Keep fraction whose drop / increase the table shows (the ExCon paper's table uses 0.45).
DROP_KEEP = 0.45

#: ``(key, header, better, digits, scientific)`` of the per-run columns, in table order. Accuracies in percent.
COMPARE_COLUMNS: tuple[tuple[str, str, str, int, bool], ...] = (
    ("top1", "top-1 (%)", "higher", 2, False),
    ("best_val_top1", "best val top-1 (%)", "higher", 2, False),
    ("drop_percent", f"drop % @{DROP_KEEP}", "lower", 3, False),
    ("increase_percent", f"increase % @{DROP_KEEP}", "higher", 3, False),
    ("infidelity", "infidelity", "lower", 2, True),
    ("ece_clean", "ECE clean", "lower", 4, False),
    ("ece_fgsm", "ECE FGSM", "lower", 4, False),
)
_STABILITY = ("stability", "stability (val top-1 std)", "lower", 2, False)
_EVAL_KEYS = ("top1", "drop_percent", "increase_percent", "infidelity", "ece_clean", "ece_fgsm")


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_run_record(folder: str | Path) -> dict[str, Any]:
    """What :func:`compare_runs` reads from one run folder.

    Returns:
        ``{"folder", "method", "seed", "dataset", "model", "epochs", "val_top1": [per epoch], "has_eval",
        "eval_settings", "values": {column key: float or None}}`` (accuracies in percent).

    Raises:
        FileNotFoundError: ``folder`` has no ``config.json``.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config is None:
        raise FileNotFoundError(f"{str(folder)!r} is not an exaug run folder (no config.json)")
    summary = _read_json(folder / "summary.json") or {}
    rows = sorted((r for r in read_metrics(folder) if r.get("val_top1") is not None), key=lambda r: r["epoch"])
    evaluation = _read_json(folder / "eval" / "eval.json")
    values: dict[str, float | None] = {key: None for key, *_ in COMPARE_COLUMNS}
    values["best_val_top1"] = summary.get("best_val_top1")
    eval_settings = None
    if evaluation is not None:
        metrics = evaluation.get("metrics", {})
        top1 = metrics.get("accuracy", {}).get("top1")
        values["top1"] = None if top1 is None else 100.0 * top1
        keep = metrics.get("drop_increase", {}).get("keep", {}).get(repr(DROP_KEEP), {})
        values["drop_percent"] = keep.get("drop_percent")
        values["increase_percent"] = keep.get("increase_percent")
        values["infidelity"] = metrics.get("infidelity", {}).get("mean")
        values["ece_clean"] = metrics.get("calibration", {}).get("ece_clean")
        values["ece_fgsm"] = metrics.get("calibration", {}).get("ece_fgsm")
        ev, ex = evaluation.get("evaluation", {}), evaluation.get("explainer") or {}
        eval_settings = {"split": ev.get("split"), "images": ev.get("images"), "held_out": ev.get("held_out"),
                         "explainer": ex.get("name"),
                         "target_layer": ex.get("target_layer"), "settings": evaluation.get("settings", {})}
    return {
        "folder": str(folder),
        "method": config.get("method"),
        "seed": config.get("seed"),
        "dataset": config.get("dataset"),
        "model": config.get("model"),
        "epochs": config.get("epochs"),
        "val_top1": [float(r["val_top1"]) for r in rows],
        "has_eval": evaluation is not None,
        "eval_settings": eval_settings,
        "values": values,
    }


def _aggregate(values: Sequence[float | None]) -> dict[str, Any]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0, "values": []}
    array = np.asarray(present, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std()) if len(present) > 1 else None,
            "n": len(present), "values": present}


def _stability(runs: Sequence[dict[str, Any]], notes: list[str], method: str) -> dict[str, Any]:
    series = [r["val_top1"] for r in runs if r["val_top1"]]
    if len(series) < 2:
        return {"mean": None, "std": None, "n": len(series), "epochs": None}
    epochs = min(len(s) for s in series)
    if any(len(s) != epochs for s in series):
        notes.append(f"{method}: runs have different numbers of validated epochs; stability uses the first {epochs}")
    value = training_stability([s[:epochs] for s in series])
    return {"mean": value, "std": None, "n": len(series), "epochs": epochs}


def _cell(agg: dict[str, Any], digits: int, scientific: bool, runs: int) -> str:
    """``mean ± std``, ``(n=k)`` appended when only ``k`` of the method's ``runs`` have the value."""
    if agg["mean"] is None:
        return "n/a"
    text = fmt(agg["mean"], digits, scientific=scientific)
    if agg["std"] is not None:
        text += " ± " + fmt(agg["std"], digits, scientific=scientific)
    return text if agg["n"] >= runs else f"{text} (n={agg['n']})"


def compare_runs(folders: Sequence[str | Path], out: str | Path | None = None) -> str:
    """Render the runs in ``folders`` as one Markdown table, one row per training method.

    Args:
        folders: run folders (written by ``exaug train``; evaluated with ``exaug evaluate`` for the eval columns).
        out: if given, also write ``compare.md`` and ``compare.json`` (all per-run values and aggregates) there.

    Returns:
        The Markdown text (title, table, legend and notes).

    Raises:
        ValueError: no folder, or the same folder twice.
        FileNotFoundError: a folder is not a run folder.
    """
    if not folders:
        raise ValueError("compare_runs needs at least one run folder")
    resolved = [Path(f).resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise ValueError("the same run folder is given more than once; each run must count once in mean ± std")
    records = [read_run_record(f) for f in folders]
    notes: list[str] = []

    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record["method"]), []).append(record)

    methods: list[dict[str, Any]] = []
    for method, runs in groups.items():
        for key in ("dataset", "model", "epochs"):
            seen = sorted({str(r[key]) for r in runs})
            if len(seen) > 1:
                notes.append(f"{method}: runs differ in {key} ({', '.join(seen)}); their mean ± std mixes settings")
        values = {key: _aggregate([r["values"][key] for r in runs]) for key, *_ in COMPARE_COLUMNS}
        values["stability"] = _stability(runs, notes, method)
        methods.append({"method": method, "runs": [r["folder"] for r in runs], "seeds": [r["seed"] for r in runs],
                        "values": values})

    missing = [r["folder"] for r in records if not r["has_eval"]]
    if missing:
        notes.append(f"{len(missing)} run(s) have no eval/eval.json, so their test columns show n/a; evaluate them "
                     "first: " + "; ".join(f"`exaug evaluate --run {f}`" for f in missing))
    signatures = {json.dumps(r["eval_settings"], sort_keys=True, default=str) for r in records if r["has_eval"]}
    if len(signatures) > 1:
        notes.append("the runs were evaluated with different settings (split, images, explainer or metric options): "
                     "compare with care (see each run's eval/eval.json)")

    columns = (*COMPARE_COLUMNS, _STABILITY)
    best: dict[str, float] = {}
    for key, _, better, *_ in columns:
        means = [m["values"][key]["mean"] for m in methods if m["values"][key]["mean"] is not None]
        if len(means) >= 2:
            best[key] = max(means) if better == "higher" else min(means)
    rows = []
    for m in methods:
        seeds = ", ".join(str(s) for s in m["seeds"])
        cells = [m["method"], f"{len(m['runs'])} (seed{'s' if len(m['runs']) > 1 else ''} {seeds})"]
        for key, _, _, digits, scientific in columns:
            agg = m["values"][key]
            # Stability is one number per method (from all its seeds), not a mean over runs.
            text = _cell(agg, digits, scientific, agg["n"] if key == "stability" else len(m["runs"]))
            cells.append(f"**{text}**" if key in best and agg["mean"] == best[key] else text)
        rows.append(cells)
    headers = ["method", "runs", *(f"{header} {'↑' if better == 'higher' else '↓'}"
                                   for _, header, better, *_ in columns)]
    lines = [f"# Comparison of {len(records)} runs", "", *md_table(headers, rows), "",
             "mean ± std over the runs of a method (population std, ddof = 0); ↑ / ↓: higher / lower is better; "
             "best mean in bold; (n=k): only k of the method's runs have the value. top-1, drop / increase, "
             "infidelity and ECE come from each run's `eval/eval.json` (the evaluated split); best val top-1 from "
             "`summary.json`; stability is the mean over epochs of the across-seed std of validation top-1 "
             "(`metrics.jsonl`, percentage points), defined for 2 or more seeds.", ""]
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    text = "\n".join(lines).rstrip("\n") + "\n"
    if out is not None:
        out_dir = Path(out)
        write_text(out_dir / "compare.md", text)
        write_json(out_dir / "compare.json", {
            "columns": [{"key": k, "header": h, "better": b} for k, h, b, *_ in columns],
            "methods": methods, "runs": records, "notes": notes, "std": "population (ddof=0)",
        })
    return text
