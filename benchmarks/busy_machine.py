"""Busy machines (issue #13): ``exaug demo`` idle and next to one other CPU-bound process, and the OpenMP probe.

Two measurements, written to ``results/busy_machine.json`` with a table:

* ``demo``: wall seconds of ``python -m exaug demo --device cpu`` alone, then while one other process keeps a
  core busy (a torch loop on 1 thread), and the ratio (issue #13 asks for at most 2x on 2 cores). Both runs use
  the ``exaug`` defaults (``--threads``: ``min(cores, 4)``; ``OMP_WAIT_POLICY=PASSIVE`` set by the command
  unless the environment has it). ``--no-passive`` runs both with libgomp's default (spinning) wait policy,
  by marking the command as already re-executed (``EXAUG_OPENMP_REEXEC=1``), for the before/after comparison.
* ``probe``: two concurrent processes, each a loop of 2-thread conv + matmul steps, with libgomp's default wait
  policy and with ``OMP_WAIT_POLICY=PASSIVE`` (plus one process alone for each), i.e. what the setting buys.

Timing benchmark: run it on an otherwise idle machine (2-4 cores), about 10 minutes::

    python benchmarks/busy_machine.py              # demo + probe
    python benchmarks/busy_machine.py --quick      # smoke run (seconds): demo --quick, a short probe
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from common import save, table

ROOT = Path(__file__).resolve().parents[1]
#: A CPU-bound neighbour: torch work on one thread until killed.
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a = (a @ a).tanh_()\n"
#: The probe loop: ``sys.argv[1]`` steps of a 2-thread conv + matmul, prints the seconds.
PROBE = """import sys, time, torch
torch.set_num_threads(2)
w, x, a = torch.randn(32, 32, 3, 3), torch.randn(16, 32, 16, 16), torch.randn(128, 128)
def step():
    return torch.nn.functional.conv2d(x, w, padding=1).relu().sum() + (a @ a).sum()
for _ in range(20):
    step()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    step()
print(time.perf_counter() - start)
"""


def environment(passive: bool | None) -> dict[str, str]:
    """The environment of a child: ``PASSIVE`` set, or (``False``) libgomp's default with no re-execution."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    if passive is True:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif passive is False:
        env["EXAUG_OPENMP_REEXEC"] = "1"  # exaug leaves libgomp's default spinning policy in place
    return env


def timed(command: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def demo_command(quick: bool, out: str) -> list[str]:
    return [sys.executable, "-m", "exaug", "demo", "--device", "cpu", "--out", out, *(["--quick"] if quick else [])]


def demo_times(quick: bool, passive: bool | None, command: Any = demo_command) -> dict[str, float]:
    """Seconds of ``command(quick, out)`` (default: ``exaug demo``) alone and next to one busy process."""
    with tempfile.TemporaryDirectory() as folder:
        env = environment(passive)
        idle = timed(command(quick, "idle"), env, folder)
        neighbour = subprocess.Popen([sys.executable, "-c", BUSY], env=env)
        try:
            busy = timed(command(quick, "busy"), env, folder)
        finally:
            neighbour.kill()
            neighbour.wait()
    return {"idle_seconds": idle, "busy_seconds": busy, "ratio": busy / idle}


def probe_times(steps: int) -> list[dict[str, Any]]:
    """The OpenMP probe: one and two concurrent 2-thread loops, with the default and the PASSIVE wait policy."""
    rows = []
    for policy, passive in (("default", None), ("PASSIVE", True)):
        env = environment(passive)
        alone = float(subprocess.run([sys.executable, "-c", PROBE, str(steps)], env=env, check=True,
                                     capture_output=True, text=True).stdout)
        pair = [subprocess.Popen([sys.executable, "-c", PROBE, str(steps)], env=env, stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
        concurrent = [float(p.communicate()[0]) for p in pair]
        rows.append({"policy": policy, "steps": steps, "alone_seconds": alone,
                     "concurrent_seconds": max(concurrent), "ratio": max(concurrent) / alone})
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: exaug demo --quick and a 20-step probe")
    parser.add_argument("--no-passive", action="store_true",
                        help="run the demo with libgomp's default wait policy (for the before/after comparison)")
    parser.add_argument("--skip-demo", action="store_true", help="only the OpenMP probe")
    parser.add_argument("--probe-steps", type=int, default=1500, help="steps of each probe loop")
    args = parser.parse_args(argv)
    steps = 20 if args.quick else args.probe_steps
    payload: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "probe": probe_times(steps)}
    if not args.skip_demo:
        payload["demo"] = {"quick": args.quick, "passive": not args.no_passive,
                           **demo_times(args.quick, False if args.no_passive else None)}
    path = save("busy_machine", payload, args.quick)
    print(table([[r["policy"], r["alone_seconds"], r["concurrent_seconds"], r["ratio"]] for r in payload["probe"]],
                ["OpenMP wait policy", "1 loop s", "2 concurrent loops s", "ratio"]))
    if "demo" in payload:
        d = payload["demo"]
        print(f"exaug demo: idle {d['idle_seconds']:.1f} s, next to one busy process {d['busy_seconds']:.1f} s "
              f"(x{d['ratio']:.2f})")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
