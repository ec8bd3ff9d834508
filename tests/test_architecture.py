"""The package's shape: computing modules never import matplotlib, and no module imports another in a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ihlib"
COMPUTING = (
    "data",
    "weights",
    "heads",
    "scoring",
    "other_kinds",
    "factored",
    "edits",
    "copying",
    "stats",
    "controls",
    "circuits",
    "diagonal",
    "subspaces",
    "shuffling",
    "projection",
    "results",
)
MAX_LINES = 450


def test_computing_modules_import_no_matplotlib_in_a_fresh_interpreter():
    """One fresh interpreter imports the computing modules one by one; none may bring in matplotlib.

    Checking after each import names the first offender exactly (earlier ones were clean), at the cost of one
    interpreter start instead of one per module (minutes on a busy 2-core machine).
    """
    code = (
        "import importlib, sys\n"
        f"for name in {list(COMPUTING)!r}:\n"
        "    importlib.import_module('ihlib.' + name)\n"
        "    if 'matplotlib' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"ihlib.{out.stdout.strip()} pulls in matplotlib"


def ihlib_imports(path: Path) -> set[str]:
    """Names of the ihlib modules that `path` imports at module level (type-checking-only imports excluded)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ihlib."):
            found.add(node.module.split(".")[1])
    return found


def test_module_imports_form_no_cycle():
    graph = {p.stem: ihlib_imports(p) for p in PACKAGE.glob("*.py")}
    visiting, done = set(), set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for child in graph.get(node, ()):
            visit(child, [*path, node])
        visiting.discard(node)
        done.add(node)

    for module in graph:
        visit(module, [])
    assert len(done) == len(graph)


def test_no_module_is_over_the_line_budget():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES and name != "book.py"} == {}
