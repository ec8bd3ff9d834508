"""Chapters a course can teach from: objectives at the top, exercises at the end with hidden answers and a check.

Read from the notebooks' source, so it runs without a built site; `test_site.py` checks the rendered pages.
Chapters are the toc's notebooks whose name starts with a number; other pages are not chapters.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from ihlib.book.toc import page_path, toc_files

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = [entry for entry in toc_files(REPO) if Path(entry).stem[:2].isdigit()]
HIDDEN_TAGS = {"hide-input", "hide-cell", "hide-output"}
DROPDOWN = re.compile(r"^(:::+|```+)\{dropdown\}|^:class: dropdown", re.MULTILINE)
LIST_ITEM = re.compile(r"^\s*(?:\d+\.|-)\s+\S", re.MULTILINE)


def sections(notebook: nbformat.NotebookNode) -> dict[str, list[nbformat.NotebookNode]]:
    """Map each `## ` heading of the notebook to the cells from it up to the next `## ` heading."""
    found: dict[str, list] = {}
    current = None
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            heading = re.search(r"^## (.+)$", cell.source, re.MULTILINE)
            if heading:
                current = heading.group(1).strip()
                found[current] = []
        if current is not None:
            found[current].append(cell)
    return found


def read_chapter(entry: str) -> nbformat.NotebookNode:
    """The chapter's notebook."""
    return nbformat.read(page_path(REPO, entry), as_version=4)


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_opens_with_two_to_four_objectives(entry):
    """The chapter's first section, right after the title and its opening text, lists 2 to 4 objectives."""
    notebook = read_chapter(entry)
    chapter_sections = sections(notebook)
    assert "Objectives" in chapter_sections, f"{entry} has no '## Objectives' section"
    items = LIST_ITEM.findall("\n".join(cell.source for cell in chapter_sections["Objectives"]))
    assert 2 <= len(items) <= 4, f"{entry}: {len(items)} objectives"
    headings = list(chapter_sections)
    assert headings[0] == "Objectives", f"{entry}: the first section is {headings[0]!r}, not the objectives"


@pytest.mark.parametrize("entry", CHAPTERS)
def test_chapter_ends_with_exercises_each_with_a_hidden_answer_and_one_checked_number(entry):
    """The last section "Exercises" holds 2 to 5 exercises, each with a folded answer, and a code cell with `assert`."""
    notebook = read_chapter(entry)
    chapter_sections = sections(notebook)
    assert list(chapter_sections)[-1:] == ["Exercises"], f"{entry}: 'Exercises' is not the last section"
    cells = chapter_sections["Exercises"]
    exercises = re.findall(r"^### Exercise", "\n".join(c.source for c in cells if c.cell_type == "markdown"), re.M)
    assert 2 <= len(exercises) <= 5, f"{entry}: {len(exercises)} exercises"
    hidden = sum(
        1
        for cell in cells
        if (cell.cell_type == "markdown" and DROPDOWN.search(cell.source))
        or HIDDEN_TAGS & set(cell.metadata.get("tags", []))
    )
    assert hidden >= len(exercises), f"{entry}: {hidden} hidden answers for {len(exercises)} exercises"
    checks = [cell for cell in cells if cell.cell_type == "code" and re.search(r"^\s*assert\b", cell.source, re.M)]
    assert checks, f"{entry}: no exercise has a check cell with an assert"


def test_sections_split_at_level_two_headings_only():
    """`### ` headings stay inside their `## ` section; cells before the first `## ` belong to none."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("## Objectives\n\n1. a\n2. b"),
        nbformat.v4.new_markdown_cell("### Exercise 1"),
        nbformat.v4.new_code_cell("assert True"),
        nbformat.v4.new_markdown_cell("## Exercises"),
    ]
    found = sections(notebook)
    assert list(found) == ["Objectives", "Exercises"]
    assert len(found["Objectives"]) == 3


@pytest.mark.parametrize("entry", CHAPTERS)
def test_implement_it_exercise_has_a_stub_and_a_checker_that_prints_not_yet_instead_of_raising(entry):
    """Each chapter's Exercises hold a stub raising NotImplementedError, with no answer in it, and a cell calling an
    `ihlib.exercises` checker that catches its AssertionError and prints "not yet" (the book build must not fail)."""
    cells = sections(read_chapter(entry))["Exercises"]
    stubs = [c for c in cells if c.cell_type == "code" and "raise NotImplementedError" in c.source]
    checks = [c for c in cells if c.cell_type == "code" and "from ihlib.exercises import check_" in c.source]
    assert len(stubs) == 1 and len(checks) == 1, f"{entry}: {len(stubs)} stubs, {len(checks)} checker cells"
    assert "return" not in stubs[0].source, f"{entry}: the stub the student edits shows code beyond the signature"
    assert "except (AssertionError, NotImplementedError)" in checks[0].source and "not yet" in checks[0].source
