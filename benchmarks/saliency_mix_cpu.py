"""CIFAR-10 on a CPU: CE, CutMix, Mixup and the saliency-guided family (SaliencyMix, KeepCutout, KeepAutoAugment,
Attentive CutMix, SnapMix, SGT) on the budget of ``cifar10_cpu.py`` (same ResNet-18 x0.25, 3,000-image subset,
5 epochs at batch 64, 3 seeds, same evaluation), reusing its grid, estimate, resume and reporting code.

    python benchmarks/saliency_mix_cpu.py --jobs 2 --estimate-only   # time a few steps, print the estimate
    nohup python benchmarks/saliency_mix_cpu.py --jobs 2 > benchmarks/runs/saliency_mix_cpu.log 2>&1 &   # resumable
    python benchmarks/saliency_mix_cpu.py --quick --out /tmp/sm --results-dir /tmp/res   # smoke run (synthetic)

Each method runs with its paper defaults (``exaug.training.methods.mixing``). Results:
``<results-dir>/saliency_mix_cpu.json`` and ``.md``: mean ± std over seeds, then paired differences (same seed)
against CE and against CutMix, the random-box control of the box methods, ± SEM with ``~`` marking a difference
within 2 SEM. ``--tables-only`` rewrites those tables from the JSON without training or evaluating anything.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar10_cpu  # noqa: E402
from common import RESULTS  # noqa: E402
from grid import REPO  # noqa: E402

from exaug.evaluation.compare import paired_differences, paired_table  # noqa: E402
from exaug.training import METHODS  # noqa: E402

NAME = "saliency_mix_cpu"
STUDY_METHODS: tuple[str, ...] = tuple(m for m in ("ce", "cutmix", "mixup", "saliencymix", "keepcutout",
                                                   "keepautoaugment", "attentive_cutmix", "snapmix", "sgt")
                                       if m in METHODS)
QUICK = {**cifar10_cpu.QUICK, "methods": ["cutmix", "saliencymix", "snapmix"]}


#: Paired-difference columns: ``(key in the study JSON, header, better, digits, scientific)``.
PAIRED_COLUMNS = (("top1", "top-1 (pt)", "higher", 2, False), ("ece_fgsm", "ECE FGSM", "lower", 3, False),
                  ("drop_percent@0.45", "drop % @0.45", "lower", 3, False),
                  ("infidelity", "infidelity", "lower", 2, True))
#: The references: CE (no mixing) and CutMix (the same boxes drawn at random).
REFERENCES = ("ce", "cutmix")


def paired_tables(study: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Markdown and JSON of the paired differences of every method against each of :data:`REFERENCES`.

    Args:
        study: the study JSON (``methods[m][key]["values"]`` aligned with ``methods[m]["seeds"]``).
    """
    methods = study["methods"]
    tables = {key: {m: dict(zip(row["seeds"], row[key]["values"])) for m, row in methods.items() if key in row}
              for key, *_ in PAIRED_COLUMNS}
    lines, payload = [], {}
    for reference in (r for r in REFERENCES if r in methods):
        lines += [f"\n## Paired differences against {reference}\n", *paired_table(tables, reference, PAIRED_COLUMNS)]
        payload[reference] = {key: {m: dataclasses.asdict(d) for m, d in paired_differences(tables[key], reference).items()}
                              for key, *_ in PAIRED_COLUMNS}
    return "\n".join(lines) + "\n", payload


def write_paired_tables(json_path: Path) -> None:
    """Add the paired tables to the study's JSON (``paired``) and Markdown (after its own tables)."""
    study = json.loads(json_path.read_text(encoding="utf-8"))
    markdown, payload = paired_tables(study)
    json_path.write_text(json.dumps({**study, "paired": payload}, indent=2), encoding="utf-8")
    md_path = json_path.with_suffix(".md")
    text = md_path.read_text(encoding="utf-8").split("\n## Paired differences against")[0].rstrip("\n") + "\n"
    md_path.write_text(text + markdown, encoding="utf-8")
    print(markdown)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or estimate) the study; same flags as ``cifar10_cpu.py``, other default folders and methods."""
    argv = list(sys.argv[1:] if argv is None else argv)
    results_dir = Path(argv[argv.index("--results-dir") + 1]) if "--results-dir" in argv else RESULTS
    if "--tables-only" in argv:
        write_paired_tables(results_dir / f"{NAME}.json")
        return {"paths": [str(results_dir / f"{NAME}.json"), str(results_dir / f"{NAME}.md")]}
    if "--out" not in argv:
        argv += ["--out", str(REPO / "benchmarks" / "runs" / NAME)]
    work_dir = results_dir / f".{NAME}"
    argv = [a for i, a in enumerate(argv) if a != "--results-dir" and (i == 0 or argv[i - 1] != "--results-dir")]
    # cifar10_cpu reads its method list and quick defaults from module globals at call time.
    cifar10_cpu.STUDY_METHODS, cifar10_cpu.QUICK = STUDY_METHODS, QUICK
    out = cifar10_cpu.main([*argv, "--results-dir", str(work_dir)])
    if "paths" in out:  # written as cifar10_cpu.*: move to this study's names
        renamed = []
        for path in map(Path, out["paths"]):
            target = results_dir / f"{NAME}{path.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            renamed.append(str(target))
        out["paths"] = renamed
        write_paired_tables(next(Path(p) for p in renamed if p.endswith(".json")))
    return out


if __name__ == "__main__":
    main()
