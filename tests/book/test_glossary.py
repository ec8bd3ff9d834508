"""The glossary page: one anchor per term, anchors equal to their headings' slugs, and no link to a missing term."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from myst_parser.mdit_to_docutils.base import default_slugify

from ihlib.book.toc import toc_files

REPO = Path(__file__).resolve().parents[2]
GLOSSARY = REPO / "book" / "glossary.md"
LABEL_THEN_HEADING = re.compile(r"^\((?P<label>[^)]+)\)=\n## (?P<heading>.+)$", re.MULTILINE)
REQUIRED = [
    "residual-stream", "qk-circuit", "ov-circuit", "k-composition", "q-composition", "induction-head",
    "shifting-head", "attention-sink", "principal-angles", "singular-subspace", "z-score",
    "uniform-attention-baseline", "copying-score", "zero-ablation", "mean-ablation", "phase-change",
    "cross-fitting", "energy",
]  # fmt: skip


def glossary_labels() -> dict[str, str]:
    """Map each `(label)=` target of the glossary to the `##` heading right below it."""
    return {m["label"]: m["heading"] for m in LABEL_THEN_HEADING.finditer(GLOSSARY.read_text())}


def book_markdown() -> dict[str, str]:
    """Markdown text of every page under `book/`: `.md` files whole, notebooks' markdown cells joined."""
    texts = {}
    for path in sorted((REPO / "book").iterdir()):
        if path.suffix == ".md":
            texts[path.name] = path.read_text()
        elif path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            texts[path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return texts


def test_every_required_term_has_an_anchor():
    """Each term the book and the course need has its own `(anchor)=` target."""
    missing = sorted(set(REQUIRED) - set(glossary_labels()))
    assert not missing, f"glossary.md lacks anchors {missing}"


def test_every_target_sits_on_a_heading_with_the_same_slug():
    """Every target is followed by a `##` heading whose MyST slug equals it, so `glossary.md#slug` resolves."""
    text = GLOSSARY.read_text()
    assert text.count(")=\n") == len(glossary_labels()), "a target is not directly followed by a ## heading"
    wrong = {label: heading for label, heading in glossary_labels().items() if default_slugify(heading) != label}
    assert not wrong, f"targets whose heading slug differs: {wrong}"


def test_terms_are_in_alphabetical_order():
    """Headings run in alphabetical order (case-insensitive), so a reader can scan the page."""
    headings = list(glossary_labels().values())
    assert headings == sorted(headings, key=str.lower)


@pytest.mark.parametrize("page", sorted(book_markdown()))
def test_links_to_glossary_terms_point_at_existing_anchors(page):
    """`glossary.md#x` links in any page, and `#x` links inside the glossary, name an existing anchor."""
    text = book_markdown()[page]
    pattern = r"\]\(#([^)]+)\)" if page == "glossary.md" else r"\]\(glossary\.md#([^)]+)\)"
    unknown = sorted(set(re.findall(pattern, text)) - set(glossary_labels()))
    assert not unknown, f"{page} links to glossary anchors that do not exist: {unknown}"


def test_the_glossary_is_in_the_table_of_contents():
    """`book/glossary` is a toc entry, so the site builds it."""
    assert "book/glossary" in toc_files(REPO)
