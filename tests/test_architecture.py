"""The package's shape: layers import one way, no cycle between files or folders, no matplotlib below the report,
figures take their style from one module, and no module over the line budget."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ihlib"
# Each layer may import from its own folder and from layers of a lower rank; layers of one rank are siblings
# that do not import each other.
LAYER_RANK = {
    "model": 0,
    "heads": 1,
    "core": 2,
    "claims": 3,
    "tools": 3,
    "report": 4,
    "training": 4,
    "exercises": 4,
    "book": 5,
}
COMPUTING_LAYERS = ("model", "heads", "core", "claims")  # compute and return; never draw
MAX_LINES = 450
FIGURE_MODULES = ("plots_experiments", "plots_heads", "plots_weights", "plots_teaching", "plots_routes")


def module_name(path: Path, root: Path) -> str:
    """`ihlib.core.stats` for `root/core/stats.py`, `ihlib.book` for `root/book/__init__.py`."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(("ihlib", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imported_modules(source: str) -> set[str]:
    """Every `ihlib...` module `source` imports, anywhere in it (functions and `TYPE_CHECKING` blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ihlib"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ihlib"))
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (names that are folders map to their `__init__`)."""
    return {name: imported_modules(text) & set(sources) for name, text in sources.items()}


def package_sources(root: Path = PACKAGE) -> dict[str, str]:
    """Module name -> source of every module of the package."""
    return {module_name(path, root): path.read_text() for path in sorted(root.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    """The layer folder of `ihlib.<layer>.<...>`, None for the package's own `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(sources: dict[str, str]) -> list[str]:
    """ "a -> b" for every import of a module in a higher or sibling layer, or of the package facade `ihlib`."""
    bad = []
    for name, text in sources.items():
        here = layer_of(name)
        if here is None:
            continue
        for target in sorted(imported_modules(text)):
            there = layer_of(target)
            if there is None or (there != here and LAYER_RANK[there] >= LAYER_RANK[here]):
                bad.append(f"{name} -> {target}")
    return bad


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path `[a, b, ..., a]`, or None when it has none."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path, node, child]
            if child not in state and (found := visit(child, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Layer folder -> the other layer folders its modules import."""
    folders: dict[str, set[str]] = {}
    for name, targets in graph.items():
        here = layer_of(name)
        if here is not None:
            folders.setdefault(here, set()).update(t for t in map(layer_of, targets) if t is not None and t != here)
    return folders


def test_every_layer_folder_has_a_rank_and_nothing_sits_beside_them():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py"}
    assert folders == set(LAYER_RANK)
    assert loose == set()


def test_no_module_imports_from_a_higher_or_sibling_layer():
    assert upward_imports(package_sources()) == []


def test_the_layer_check_fails_on_a_deliberate_upward_import(tmp_path):
    """A temporary module of the model layer that imports the report layer (under TYPE_CHECKING) is caught."""
    sources = package_sources()
    sources["ihlib.model.upward"] = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ihlib.report.saving import save_result\n"
    )
    sources["ihlib.claims.sideways"] = "def f():\n    from ihlib.tools.losses import PositionLoss\n"
    assert sorted(upward_imports(sources)) == [
        "ihlib.claims.sideways -> ihlib.tools.losses",
        "ihlib.model.upward -> ihlib.report.saving",
    ]


def test_no_cycle_between_modules_or_between_folders():
    graph = import_graph(package_sources())
    assert first_cycle(graph) is None
    assert first_cycle(folder_graph(graph)) is None


def test_the_cycle_check_finds_a_cycle():
    assert first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert first_cycle({"a": {"b"}, "b": set()}) is None


def test_computing_layers_import_no_matplotlib_in_a_fresh_interpreter():
    """One fresh interpreter imports every module of the computing layers; none may bring in matplotlib."""
    names = [n for n in package_sources() if layer_of(n) in COMPUTING_LAYERS]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'matplotlib' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{out.stdout.strip()} pulls in matplotlib"


def test_figures_take_their_style_from_the_style_module_only():
    sources = package_sources()
    for figure in FIGURE_MODULES:
        others = {f"ihlib.report.{m}" for m in FIGURE_MODULES} - {f"ihlib.report.{figure}"}
        assert imported_modules(sources[f"ihlib.report.{figure}"]) & others == set(), figure


def test_verdict_sentences_and_tables_do_not_import_each_other():
    sources = package_sources()
    assert "ihlib.report.tables" not in imported_modules(sources["ihlib.report.sentences"])
    assert "ihlib.report.sentences" not in imported_modules(sources["ihlib.report.tables"])


def test_no_module_is_over_the_line_budget():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
