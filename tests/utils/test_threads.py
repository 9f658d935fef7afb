"""Thread settings: defaults, which OpenMP variables are added (never overriding the user's), torch threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from exaug.utils.threads import (
    DEFAULT_MAX_THREADS,
    REEXEC_MARK,
    available_cores,
    default_threads,
    openmp_env,
    reexec_command,
    resolve_threads,
    set_threads,
)


def test_default_is_the_cores_capped_at_four():
    assert [default_threads(c) for c in (1, 2, 3, 4, 8, 128)] == [1, 2, 3, 4, 4, 4]
    assert default_threads() == min(len(os.sched_getaffinity(0)), DEFAULT_MAX_THREADS) == \
        min(available_cores(), 4)
    with pytest.raises(ValueError, match="cores"):
        default_threads(0)


def test_resolve_prefers_the_request_then_the_users_omp_num_threads():
    assert resolve_threads(3, {"OMP_NUM_THREADS": "1"}) == 3
    assert resolve_threads(None, {"OMP_NUM_THREADS": "1"}) is None  # torch already follows it
    assert resolve_threads(None, {}) == default_threads()
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(0, {})


def test_openmp_env_adds_only_what_the_user_did_not_set():
    assert openmp_env(2, {}) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    assert openmp_env(None, {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp_env(2, {"OMP_WAIT_POLICY": "active"}) == {"OMP_NUM_THREADS": "2"}
    assert openmp_env(2, {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "8"}) == {}


def test_set_threads_sets_torch_and_none_leaves_it():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == torch.get_num_threads() == 1
        assert set_threads(None) == 1
    finally:
        torch.set_num_threads(before)


def test_reexec_command_runs_this_exaug_with_the_environment(tmp_path):
    """The command really runs (from another folder) the imported package, in the given environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", REEXEC_MARK)}
    argv, child_env = reexec_command(["explainers", "gradcam"], {**env, "OMP_WAIT_POLICY": "PASSIVE"})
    assert argv[0] == sys.executable and argv[-2:] == ["explainers", "gradcam"] and child_env[REEXEC_MARK] == "1"
    child_env["PYTHONPATH"] = ""  # the command must find the package by itself
    done = subprocess.run(argv, env=child_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gradcam" in done.stdout
