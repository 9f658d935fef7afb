"""The shared argument checks: accepted values come back converted, everything else raises naming the option."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exaug.utils.checks import non_negative_float, positive_int, probability


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_and_converts(value):
    out = positive_int("n_steps", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -2, 1.0, 2.5, "3", True, None])
def test_positive_int_rejects_naming_the_option(value):
    with pytest.raises(ValueError, match=rf"^n_steps must be a positive int, got {value!r}$"):
        positive_int("n_steps", value)


def test_positive_int_allow_none():
    assert positive_int("chunk_size", None, allow_none=True) is None
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None, got 0"):
        positive_int("chunk_size", 0, allow_none=True)


@pytest.mark.parametrize("value", [0, 0.0, 3, 0.25, np.float32(1.5)])
def test_non_negative_float(value):
    out = non_negative_float("stdevs", value)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [-1e-9, math.nan, "0.1", None, False])
def test_non_negative_float_rejects(value):
    with pytest.raises(ValueError, match="stdevs must be a non-negative number"):
        non_negative_float("stdevs", value)


@pytest.mark.parametrize("value", [1e-6, 0.5, 1 - 1e-6])
def test_probability_open_interval(value):
    assert probability("p", value) == value


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, math.nan, True, "0.5"])
def test_probability_rejects(value):
    with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\)"):
        probability("p", value)


def test_one_home_for_positive_int():
    """Every package uses the same function (re-homed, not copied)."""
    import importlib

    # import_module, not attribute access: packages re-export functions named like their modules.
    for name in ("augment.saliency_cache", "explainers.rise", "explainers.pgc", "metrics.drop_increase", "targets"):
        assert importlib.import_module(f"exaug.{name}").positive_int is positive_int, name
    assert not hasattr(importlib.import_module("exaug.explainers.base"), "positive_int")
