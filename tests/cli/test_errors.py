"""The exception -> exit code table and the one-line messages of :mod:`exaug.cli.errors`."""

from __future__ import annotations

import pytest

from exaug.cli.errors import UsageError, error_line, exit_code, usage_errors
from exaug.training import TrainingDiverged
from exaug.utils.checkpoint import CheckpointError


@pytest.mark.parametrize("err, code", [
    (ValueError("x"), 2), (UsageError("x"), 2), (TypeError("x"), 2), (KeyError("x"), 2), (IndexError("x"), 2),
    (FileNotFoundError("x"), 2), (NotADirectoryError("x"), 2), (IsADirectoryError("x"), 2),
    (CheckpointError("x"), 1), (TrainingDiverged("x"), 1), (RuntimeError("x"), 1), (FileExistsError("x"), 1),
    (PermissionError("x"), 1), (OSError("x"), 1),
    (AttributeError("x"), None), (AssertionError("x"), None), (NameError("x"), None), (ZeroDivisionError(), None),
])
def test_exit_codes(err, code):
    assert exit_code(err) == code


def test_error_line_is_one_line():
    assert error_line("train", ValueError("bad\n  value")) == "exaug train: error: bad value"
    assert error_line("explain", KeyError("no such key")) == "exaug explain: error: no such key"
    assert error_line("demo", RuntimeError()) == "exaug demo: error: RuntimeError"


def test_usage_errors_turns_run_failures_into_usage_errors():
    with pytest.raises(UsageError, match="no CUDA") as info:
        with usage_errors():
            raise RuntimeError("no CUDA")
    assert isinstance(info.value.__cause__, RuntimeError) and exit_code(info.value) == 2
    with pytest.raises(AttributeError):  # bugs pass through unchanged
        with usage_errors():
            raise AttributeError("bug")
