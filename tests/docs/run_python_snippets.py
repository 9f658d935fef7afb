"""Run python doc blocks in one interpreter (exaug imported once), each in a fresh namespace and its own folder.

Usage: ``python run_python_snippets.py JOBS.json RESULTS.json`` with JOBS a list of ``{"id", "code", "cwd"}``;
RESULTS maps each id to ``null`` (ran) or the traceback text.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback


def main(jobs_path: str, results_path: str) -> None:
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    results: dict[str, str | None] = {}
    for job in jobs:
        os.chdir(job["cwd"])
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                exec(compile(job["code"], job["id"], "exec"), {"__name__": "__main__"})
            results[job["id"]] = None
        except BaseException:  # noqa: BLE001 (SystemExit from a snippet is a failure too)
            results[job["id"]] = traceback.format_exc() + "\n--- stdout ---\n" + output.getvalue()[-2000:]
        # Write after every block: a crash of the interpreter still leaves the earlier results.
        with open(results_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
