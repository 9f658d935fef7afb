"""The public surface: every ``exaug.X`` the README and docs mention exists, the top-level names the docs promise
import from ``exaug``, and the lower layers do not import higher ones."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import exaug

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and follow the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def doc_references() -> list[tuple[str, str]]:
    refs = set()
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        # `exaug.a.b` in prose and code; a trailing dot is punctuation.
        refs.update((path.name, m) for m in re.findall(r"\bexaug(?:\.[A-Za-z_][A-Za-z_0-9]*)+", text))
        # `from exaug.x import a, b` in code blocks.
        for module, names in re.findall(r"^\s*from (exaug(?:\.\w+)*) import ([\w, ]+)$", text, flags=re.M):
            refs.update((path.name, f"{module}.{name.strip()}") for name in names.split(",") if name.strip())
    return sorted(refs)


REFERENCES = doc_references()


def test_the_docs_reference_enough_names():
    assert len(REFERENCES) > 40  # guards the regexes above against silently matching nothing


@pytest.mark.parametrize("doc,dotted", REFERENCES, ids=[f"{d}:{r}" for d, r in REFERENCES])
def test_every_name_the_docs_use_exists(doc, dotted):
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{doc} mentions {dotted}, which does not exist: {error}")


@pytest.mark.parametrize(
    "name",
    ["EDDAAugment", "SaliencyCache", "Classifier", "resolve_explainer", "is_explainer", "list_explainers",
     "cgc_heatmaps", "CGCLoss", "normalize_saliency", "ExplanationMaskAugment", "create_explainer"],
)
def test_top_level_names(name):
    assert name in exaug.__all__ and getattr(exaug, name) is not None


def test_all_is_importable():
    assert all(hasattr(exaug, name) for name in exaug.__all__)
    assert len(set(exaug.__all__)) == len(exaug.__all__)


# The pipeline, lowest layer first (docs/architecture.md): a package or top-level module may import itself and
# anything in an earlier layer, never a later one.
LAYERS: list[set[str]] = [
    {"utils"},
    {"data", "models", "transforms"},
    {"explainers"},
    {"targets", "testing"},
    {"augment"},
    {"losses"},
    {"training"},
    {"metrics"},
    {"evaluation"},
    {"integrations"},
    {"cli"},
]
ALLOWED = {name: set().union(*LAYERS[:i]) for i, layer in enumerate(LAYERS) for name in layer}


def exaug_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(imported exaug module, imported names)`` of every import in ``path``, relative ones resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return [(m, names) for m, names in found if m == "exaug" or m.startswith("exaug.")]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layers_import_no_higher_ones_and_no_private_names(package):
    folder = ROOT / "exaug" / package
    paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    assert paths and all(p.is_file() for p in paths), package
    for path in paths:
        for module, names in exaug_imports(path):
            parts = module.split(".")
            # ``from .. import models`` imports exaug.models; the version string is defined at the root.
            targets = [n for n in names if n != "__version__"] if parts == ["exaug"] else [parts[1]]
            for target in targets:
                assert target == package or target in ALLOWED[package], f"{path.name} imports exaug.{target}"
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            assert not private, f"{path.name} imports private {private} from {module}"
