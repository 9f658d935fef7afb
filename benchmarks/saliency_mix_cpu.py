"""CIFAR-10 on a CPU: CE, CutMix, Mixup and the saliency-guided family (SaliencyMix, KeepCutout, KeepAutoAugment,
Attentive CutMix, SnapMix, SGT) on the budget of ``cifar10_cpu.py`` (same ResNet-18 x0.25, 3,000-image subset,
5 epochs at batch 64, 3 seeds, same evaluation), reusing its grid, estimate, resume and reporting code.

    python benchmarks/saliency_mix_cpu.py --jobs 2 --estimate-only   # time a few steps, print the estimate
    nohup python benchmarks/saliency_mix_cpu.py --jobs 2 > benchmarks/runs/saliency_mix_cpu.log 2>&1 &   # resumable
    python benchmarks/saliency_mix_cpu.py --quick --out /tmp/sm --results-dir /tmp/res   # smoke run (synthetic)

Each method runs with its paper defaults (``exaug.training.methods.mixing``). Results:
``<results-dir>/saliency_mix_cpu.json`` and ``.md`` (mean ± std over seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar10_cpu  # noqa: E402
from common import RESULTS  # noqa: E402
from grid import REPO  # noqa: E402

from exaug.training import METHODS  # noqa: E402

NAME = "saliency_mix_cpu"
STUDY_METHODS: tuple[str, ...] = tuple(m for m in ("ce", "cutmix", "mixup", "saliencymix", "keepcutout",
                                                   "keepautoaugment", "attentive_cutmix", "snapmix", "sgt")
                                       if m in METHODS)
QUICK = {**cifar10_cpu.QUICK, "methods": ["cutmix", "saliencymix", "snapmix"]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or estimate) the study; same flags as ``cifar10_cpu.py``, other default folders and methods."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in argv:
        argv += ["--out", str(REPO / "benchmarks" / "runs" / NAME)]
    results_dir = RESULTS
    if "--results-dir" in argv:
        results_dir = Path(argv[argv.index("--results-dir") + 1])
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
    return out


if __name__ == "__main__":
    main()
