"""``exaug`` itself: version, ``python -m exaug``, help texts, and one-line errors for every subcommand."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import exaug
from exaug.cli import COMMANDS, build_parser, main

#: A quick user error per subcommand (each fails before any training or evaluation starts).
USER_ERRORS = {
    "explainers": (["explainers", "gradcamm"], ValueError, "Did you mean 'gradcam'?"),
    "train": (["train", "--method", "exconbb", "--quiet"], ValueError, "unknown method 'exconbb'"),
    "evaluate": (["evaluate", "--run", "/nonexistent/run", "--quiet"], FileNotFoundError, "/nonexistent/run"),
    "compare": (["compare", "/nonexistent/run"], FileNotFoundError, "not an exaug run folder"),
    "explain": (["explain", "--index", "0"], ValueError, "exactly one of --run"),
    "demo": (["demo", "--device", "cuda:7"], ValueError, "device 'cuda:7'"),
}


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and exaug.__version__ in capsys.readouterr().out


def test_console_script_entry_point():
    """`python -m exaug` is what `torchrun -m exaug` runs."""
    out = subprocess.run([sys.executable, "-m", "exaug", "--version"], capture_output=True, text=True, check=True)
    assert exaug.__version__ in out.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_command_is_tested_here():
    assert set(USER_ERRORS) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_user_error_is_one_line_without_traceback(command, capsys):
    argv, error, message = USER_ERRORS[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"exaug {command}: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err + captured.out
    with pytest.raises(error, match=message.replace("?", r"\?").replace("(", r"\(")):
        main(["--debug", *argv])


def test_the_real_process_prints_one_line_or_with_debug_the_traceback():
    command = [sys.executable, "-m", "exaug"]
    plain = subprocess.run([*command, "compare", "/nonexistent/run"], capture_output=True, text=True)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("exaug compare: error: ")
    debug = subprocess.run([*command, "--debug", "compare", "/nonexistent/run"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("FileNotFoundError: ")


def test_bugs_keep_their_traceback(monkeypatch):
    """An exception that is no user error (here AttributeError) is not turned into a one-line message."""
    import exaug.cli.compare

    def broken(args):
        raise AttributeError("a bug")

    monkeypatch.setattr(exaug.cli.compare, "run", broken)
    with pytest.raises(AttributeError, match="a bug"):
        main(["compare", "x"])


def test_interrupt_exits_130(monkeypatch, capsys):
    import exaug.cli.compare

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(exaug.cli.compare, "run", interrupted)
    assert main(["compare", "x"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_default_once(command):
    sub = _subparsers(build_parser())[command]
    assert not issubclass(sub.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    formatter = sub._get_formatter()
    for action in sub._actions:
        if action.help:
            assert formatter._expand_help(action).count("default") <= 1, action.option_strings


def test_help_does_not_import_heavy_backends():
    code = ("import sys; from exaug.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('matplotlib', 'captum', 'pytorch_grad_cam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
