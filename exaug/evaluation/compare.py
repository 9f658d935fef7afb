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

Below it, the **paired differences** against a reference method (``supcon`` by default when it is compared):
for each other method and column, the difference ``method - reference`` on every seed both ran, its mean ± SEM
(sample std ``ddof = 1`` over ``sqrt(n)``) and the number of paired seeds; a difference within 2 SEM (or with
fewer than 2 paired seeds) is marked ``~``, not significant. :func:`paired_differences` and
:func:`summary_tables` are the reusable pieces, so study scripts print the same tables.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from ..metrics import training_stability
from ..training.logger import read_metrics
from .output import fmt, md_table, write_json, write_text

__all__ = [
    "COMPARE_COLUMNS",
    "DROP_KEEP",
    "PAIRED_LEGEND",
    "PairedDifference",
    "compare_runs",
    "format_paired",
    "paired_differences",
    "paired_table",
    "read_run_record",
    "summary_tables",
]

#: Column spec: ``(key, header, better ("higher" / "lower"), digits, scientific)``.
Column = tuple[str, str, str, int, bool]
#: ``{method: {seed: value or None}}``: one column of per-seed results.
SeedTable = Mapping[str, Mapping[Hashable, "float | None"]]
#: The legend printed under every paired-difference table.
PAIRED_LEGEND = ("paired difference (method − reference) over the seeds both ran, mean ± SEM (sample std, "
                 "ddof = 1, over √n); n: paired seeds; ~: not significant (|difference| ≤ 2 SEM, or fewer than "
                 "2 paired seeds).")

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


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """``method - reference`` over the seeds both have a value for.

    Attributes:
        method, reference: the two methods.
        mean: mean paired difference (``None``: no common seed).
        sem: standard error of that mean, sample std (``ddof = 1``) over ``sqrt(n)`` (``None``: ``n < 2``).
        n: number of paired seeds.
        seeds: the paired seeds, in the method's order.
    """

    method: str
    reference: str
    mean: float | None
    sem: float | None
    n: int
    seeds: tuple[Hashable, ...]

    @property
    def significant(self) -> bool:
        """``|mean| > 2 SEM`` (never with fewer than 2 paired seeds)."""
        return self.mean is not None and self.sem is not None and abs(self.mean) > 2 * self.sem


def paired_differences(table: SeedTable, reference: str) -> dict[str, PairedDifference]:
    """Paired differences of every method against ``reference``, pairing runs by seed.

    Args:
        table: ``{method: {seed: value}}``; ``None`` values are left out of the pairing.
        reference: the method every other one is compared with.

    Returns:
        ``{method: PairedDifference}`` for every method but the reference, in ``table``'s order.

    Raises:
        ValueError: ``reference`` is not in ``table``.

    Example:
        >>> table = {"supcon": {0: 30.0, 1: 32.0, 2: 31.0}, "exconb": {0: 31.0, 1: 34.0, 2: 33.0, 3: 40.0}}
        >>> d = paired_differences(table, "supcon")["exconb"]
        >>> d.mean, round(d.sem, 4), d.n, d.seeds, d.significant
        (1.6666666666666667, 0.3333, 3, (0, 1, 2), True)
    """
    if reference not in table:
        raise ValueError(f"reference method {reference!r} is not among the compared methods: {', '.join(table)}")
    ref = {seed: v for seed, v in table[reference].items() if v is not None}
    out: dict[str, PairedDifference] = {}
    for method, values in table.items():
        if method == reference:
            continue
        seeds = tuple(seed for seed, v in values.items() if v is not None and seed in ref)
        diffs = np.asarray([float(values[s]) - float(ref[s]) for s in seeds], dtype=np.float64)  # type: ignore[arg-type]
        mean = float(diffs.mean()) if len(diffs) else None
        sem = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else None
        out[method] = PairedDifference(method, reference, mean, sem, len(diffs), seeds)
    return out


def format_paired(diff: PairedDifference, digits: int = 2, scientific: bool = False) -> str:
    """``+1.23 ± 0.45 (n=5)``, prefixed by ``~`` when not significant; ``n/a`` without a common seed.

    Example:
        >>> format_paired(PairedDifference("exconb", "supcon", 0.5, 0.4, 5, (0, 1, 2, 3, 4)))
        '~ +0.50 ± 0.40 (n=5)'
        >>> format_paired(PairedDifference("exconb", "supcon", -2.0, 0.5, 5, (0, 1, 2, 3, 4)))
        '-2.00 ± 0.50 (n=5)'
    """
    if diff.mean is None:
        return "n/a"
    sign = "+" if diff.mean >= 0 else "-"
    text = sign + fmt(abs(diff.mean), digits, scientific=scientific)
    if diff.sem is not None:
        text += " ± " + fmt(diff.sem, digits, scientific=scientific)
    text += f" (n={diff.n})"
    return text if diff.significant else "~ " + text


def paired_table(tables: Mapping[str, SeedTable], reference: str, columns: Sequence[Column]) -> list[str]:
    """Markdown lines: one row per method against ``reference``, one column per ``columns`` key, and the legend.

    Args:
        tables: ``{column key: {method: {seed: value}}}``.
        reference: the reference method (see :func:`paired_differences`).
        columns: which keys of ``tables`` to show and how (``(key, header, better, digits, scientific)``).
    """
    diffs = {key: paired_differences(tables[key], reference) for key, *_ in columns}
    methods = [m for m in dict.fromkeys(m for key, *_ in columns for m in tables[key]) if m != reference]
    rows = [[method, *(format_paired(diffs[key][method], digits, scientific)
                       for key, _, _, digits, scientific in columns)] for method in methods]
    headers = ["method", *(f"Δ {header} {'↑' if better == 'higher' else '↓'}" for _, header, better, *_ in columns)]
    return [f"Paired differences against `{reference}` (same seed):", "", *md_table(headers, rows), "",
            PAIRED_LEGEND, ""]


def summary_tables(tables: Mapping[str, SeedTable], columns: Sequence[Column], reference: str | None = None) -> str:
    """Mean ± std per method with its number of seeds, then the paired differences against ``reference``.

    The tables :func:`compare_runs` prints, for any per-seed results (e.g. a benchmark script's).

    Example:
        >>> tables = {"top1": {"supcon": {0: 30.0, 1: 32.0}, "exconb": {0: 31.0, 1: 31.5}}}
        >>> print(summary_tables(tables, [("top1", "top-1 (%)", "higher", 2, False)], reference="supcon"))
        | method | seeds | top-1 (%) ↑ |
        |:---|---:|---:|
        | supcon | 2 | 31.00 ± 1.00 |
        | exconb | 2 | 31.25 ± 0.25 |
        <BLANKLINE>
        mean ± std over seeds (population std, ddof = 0); ↑ / ↓: higher / lower is better.
        <BLANKLINE>
        Paired differences against `supcon` (same seed):
        <BLANKLINE>
        | method | Δ top-1 (%) ↑ |
        |:---|---:|
        | exconb | ~ +0.25 ± 0.75 (n=2) |
        <BLANKLINE>
        paired difference (method − reference) over the seeds both ran, mean ± SEM (sample std, ddof = 1, over √n); n: paired seeds; ~: not significant (|difference| ≤ 2 SEM, or fewer than 2 paired seeds).
    """
    methods = list(dict.fromkeys(m for key, *_ in columns for m in tables[key]))
    rows = []
    for method in methods:
        seeds = {s for key, *_ in columns for s, v in tables[key].get(method, {}).items() if v is not None}
        cells = [method, str(len(seeds))]
        for key, _, _, digits, scientific in columns:
            values = list(tables[key].get(method, {}).values())
            cells.append(_cell(_aggregate(values), digits, scientific, len(seeds)))
        rows.append(cells)
    headers = ["method", "seeds", *(f"{header} {'↑' if better == 'higher' else '↓'}"
                                    for _, header, better, *_ in columns)]
    lines = [*md_table(headers, rows), "",
             "mean ± std over seeds (population std, ddof = 0); ↑ / ↓: higher / lower is better.", ""]
    if reference is not None:
        lines += paired_table(tables, reference, columns)
    return "\n".join(lines).rstrip("\n")


def _seed_tables(groups: Mapping[str, Sequence[dict[str, Any]]], notes: list[str]) -> dict[str, dict] | None:
    """``{column key: {method: {seed: value}}}`` for the pairing, or ``None`` (with a note) when a method has two
    runs with the same seed (they could not be paired unambiguously)."""
    for method, runs in groups.items():
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            notes.append(f"{method}: several runs share a seed, so runs cannot be paired by seed; paired "
                         "differences are not shown")
            return None
    return {key: {m: {r["seed"]: r["values"][key] for r in runs} for m, runs in groups.items()}
            for key, *_ in COMPARE_COLUMNS}


def compare_runs(
    folders: Sequence[str | Path], out: str | Path | None = None, *, reference: str | None = None
) -> str:
    """Render the runs in ``folders`` as one Markdown table, one row per training method, and the paired
    differences against a reference method.

    Args:
        folders: run folders (written by ``exaug train``; evaluated with ``exaug evaluate`` for the eval columns).
        out: if given, also write ``compare.md`` and ``compare.json`` (all per-run values and aggregates) there.
        reference: the method the others are paired with (by seed); default ``"supcon"`` when it is among two
            or more compared methods (otherwise no paired table).

    Returns:
        The Markdown text (title, table, legend and notes).

    Raises:
        ValueError: no folder, the same folder twice, or a ``reference`` that is not a compared method.
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

    if reference is not None and reference not in groups:
        raise ValueError(f"reference method {reference!r} is not among the compared methods: {', '.join(groups)}")
    if reference is None and "supcon" in groups and len(groups) > 1:
        reference = "supcon"
    tables = _seed_tables(groups, notes) if reference is not None and len(groups) > 1 else None

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
    if tables is not None:
        lines += paired_table(tables, reference, COMPARE_COLUMNS)  # type: ignore[arg-type]
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    text = "\n".join(lines).rstrip("\n") + "\n"
    if out is not None:
        out_dir = Path(out)
        write_text(out_dir / "compare.md", text)
        write_json(out_dir / "compare.json", {
            "columns": [{"key": k, "header": h, "better": b} for k, h, b, *_ in columns],
            "methods": methods, "runs": records, "notes": notes, "std": "population (ddof=0)",
            "paired": None if tables is None else {
                "reference": reference, "sem": "sample std (ddof=1) / sqrt(n)",
                "differences": {key: {m: dataclasses.asdict(d) | {"significant": d.significant}
                                      for m, d in paired_differences(tables[key], reference).items()}
                                for key, *_ in COMPARE_COLUMNS}},  # type: ignore[arg-type]
        })
    return text
