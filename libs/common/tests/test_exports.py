"""Exports: every public chorus_common module declares ``__all__``, and it covers what others import.

The imports are read from the repository's sources at test time (``ast``, no importing), so a
new ``from chorus_common.x import y`` anywhere under libs/, services/, tests/ or bench/ fails
here until ``y`` is in ``chorus_common.x.__all__``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import pkgutil
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

import chorus_common

REPO = Path(__file__).resolve().parents[3]
SOURCE_DIRS = ("libs", "apps", "services", "tests", "bench")

#: being edited elsewhere; their exports are settled there, not checked here yet
NOT_CHECKED: frozenset[str] = frozenset()


def _public_modules() -> list[str]:
    names = ["chorus_common"]
    for info in pkgutil.walk_packages(chorus_common.__path__, "chorus_common."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(name for name in names if name not in NOT_CHECKED)


def _sources() -> list[Path]:
    files = []
    for top in SOURCE_DIRS:
        for path in (REPO / top).rglob("*.py"):
            relative = path.relative_to(REPO).parts
            if any(part.startswith(".") or part == "__pycache__" for part in relative):
                continue
            files.append(path)
    return sorted(files)


def _package_of(path: Path) -> list[str] | None:
    """The dotted package a file under chorus_common's ``src`` lives in (for relative imports)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if "chorus_common" not in parts:
        return None
    return parts[parts.index("chorus_common") : -1]


def _imported_module(node: ast.ImportFrom, path: Path) -> str | None:
    if not node.level:
        return node.module
    package = _package_of(path)
    if package is None or node.level - 1 > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@functools.cache
def imported_names() -> dict[str, dict[str, set[str]]]:
    """chorus_common module -> name imported from it -> the files importing it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = _imported_module(node, path)
            if module is None or not (
                module == "chorus_common" or module.startswith("chorus_common.")
            ):
                continue
            for alias in node.names:
                if alias.name != "*":
                    found[module][alias.name].add(str(path.relative_to(REPO)))
    return found


def _is_submodule(module: ModuleType, name: str) -> bool:
    """``from package import submodule`` needs no export: the import system finds it."""
    if not hasattr(module, "__path__"):
        return False
    return importlib.util.find_spec(f"{module.__name__}.{name}") is not None


MODULES = _public_modules()


def test_the_walk_finds_the_library() -> None:
    assert "chorus_common.envelopes" in MODULES
    assert "chorus_common.testing.behaviour" in MODULES
    assert not [m for m in MODULES if "._" in m]
    assert imported_names()["chorus_common.envelopes"], "no imports of envelopes found"


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert all(isinstance(item, str) for item in exported), f"{name}.__all__ holds non-strings"
    duplicated = sorted({item for item in exported if list(exported).count(item) > 1})
    assert not duplicated, f"{name}.__all__ lists {duplicated} more than once"


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    absent = sorted(item for item in getattr(module, "__all__", ()) if not hasattr(module, item))
    assert not absent, f"{name}.__all__ names what the module does not define: {absent}"


@pytest.mark.parametrize("name", MODULES)
def test_imported_names_are_exported(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(getattr(module, "__all__", ()))
    wanted = imported_names().get(name, {})
    missing = {
        item: sorted(files)
        for item, files in sorted(wanted.items())
        if item not in exported and not _is_submodule(module, item)
    }
    importers = "; ".join(f"{item} <- {', '.join(files)}" for item, files in missing.items())
    assert not missing, f"{name}.__all__ lacks {sorted(missing)}, imported by: {importers}"
