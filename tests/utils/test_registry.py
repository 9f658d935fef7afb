"""The shared name table behind the explainer, method and evaluation-task registries."""

from __future__ import annotations

import pytest

from exaug.evaluation.tasks import list_tasks
from exaug.explainers import list_explainers
from exaug.training.methods import list_methods
from exaug.utils.registry import Registry, did_you_mean


def test_names_keep_order_or_sort_and_filter_case_sensitively():
    reg: Registry[int] = Registry("thing")
    for name in ("b", "A", "a2"):
        reg.add(name, len(name), f"the {name}")
    assert reg.names() == ["b", "A", "a2"]
    assert Registry("thing", sort=True).names() == []
    srt: Registry[int] = Registry("thing", sort=True)
    for name in ("b", "A", "a2"):
        srt.add(name, 0, "")
    assert srt.names() == sorted(["b", "A", "a2"])
    assert reg.names("a*") == ["a2"]  # case-sensitive
    assert reg.describe() == {"b": "the b", "A": "the A", "a2": "the a2"}


def test_unknown_names_suggest_and_list_valid_ones_and_never_raise_in_contains():
    reg: Registry[int] = Registry("widget", valid_label="widgets", extra_valid=("all",))
    reg.add("square", 1, "")
    with pytest.raises(ValueError, match=r"^unknown widget 'sqare'\. Did you mean 'square'\? Valid widgets: all, square$"):
        reg.get("sqare")
    assert None not in reg and 3 not in reg and "square" in reg
    with pytest.raises(TypeError, match="pattern"):
        reg.names(3)  # type: ignore[arg-type]


def test_add_is_idempotent_for_the_same_entry_and_refuses_another():
    reg: Registry[object] = Registry("explainer")
    entry = object()
    reg.add("x", entry, "")
    reg.add("x", entry, "again")  # re-registering on re-import is harmless
    with pytest.raises(ValueError, match="an explainer named 'x' is already registered"):
        reg.add("x", object(), "")
    assert reg.remove("x") is entry and "x" not in reg


def test_did_you_mean_respects_the_cutoff():
    assert did_you_mean("gradcamm", ["gradcam"]) == " Did you mean 'gradcam'?"
    assert did_you_mean("xyz", ["gradcam"]) == ""
    assert did_you_mean(None, ["gradcam"]) == ""


def test_the_three_registries_share_it():
    assert list_explainers("pgc.grad*") == sorted(list_explainers("pgc.grad*"))
    assert list_methods()[:3] == ["ce", "supcon", "supcon_ori"]
    assert list_tasks()[0] == "accuracy"
