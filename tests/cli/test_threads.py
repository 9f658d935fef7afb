"""``exaug --threads N`` and the OpenMP environment the process entry sets (in place before torch loads, or by
re-executing itself once when torch was already loaded)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from exaug.cli import COMPUTE_COMMANDS, main
from exaug.training import TrainConfig
from exaug.training.config import add_config_arguments, config_from_args
from exaug.utils.threads import REEXEC_MARK


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_option_sets_torch_threads_without_reexec(restore_threads, monkeypatch, capsys):
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("main(argv) must never re-execute"))
    assert main(["--threads", "1", "explain", "--index", "0"]) == 2  # a quick user error, after the setup
    assert torch.get_num_threads() == 1
    with pytest.raises(SystemExit):
        main(["--threads", "0", "explainers"])
    assert "positive number of threads" in capsys.readouterr().err


def test_train_threads_reaches_the_config():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--threads", "3"])).threads == 3
    assert TrainConfig().threads is None
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=0)


@pytest.mark.parametrize("preset, reexec", [({}, True), ({"OMP_WAIT_POLICY": "ACTIVE"}, False),
                                            ({REEXEC_MARK: "1"}, False)])
def test_process_entry_reexecutes_once_with_passive_wait(restore_threads, monkeypatch, preset, reexec):
    calls = []

    def fake_execve(path, args, env):
        calls.append((path, args, env))
        raise SystemExit(0)  # a real execve never returns

    for key in ("OMP_WAIT_POLICY", REEXEC_MARK, "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in preset.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setattr(sys, "argv", ["exaug", "--threads", "2", "explain", "--index", "0"])
    if reexec:
        with pytest.raises(SystemExit):
            main()
        (path, args, env), = calls
        assert path == sys.executable and args[-5:] == ["--threads", "2", "explain", "--index", "0"]
        assert (env["OMP_WAIT_POLICY"], env["OMP_NUM_THREADS"], env[REEXEC_MARK]) == ("PASSIVE", "2", "1")
    else:
        assert main() == 2 and not calls and torch.get_num_threads() == 2
    assert "explain" in COMPUTE_COMMANDS and "compare" not in COMPUTE_COMMANDS


def test_process_entry_sets_the_environment_before_torch_loads_without_reexec(tmp_path):
    """End to end, as the console script starts: torch is not loaded yet, so the variables are exported in place
    (a spy around os.execve would announce a re-exec) and the command runs with them."""
    spy = ("import atexit, os, sys\n"
           "os.execve = lambda *a: print('reexec', flush=True)\n"
           "sys.argv = ['exaug', '--threads', '1', 'explain', '--index', '0']\n"
           "from exaug.cli import main\n"
           "assert 'torch' not in sys.modules\n"
           "atexit.register(lambda: print('env', os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'],\n"
           "                              __import__('torch').get_num_threads(), flush=True))\n"
           "sys.exit(main())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", REEXEC_MARK, "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", spy], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.splitlines() == ["env PASSIVE 1 1"]  # no re-exec; torch started with the variables set
    assert done.returncode == 2 and "exactly one of --run" in done.stderr
