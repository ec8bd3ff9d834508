"""One source for each number: facts the README and the pages quote agree with the records they come from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ihlib.core.copying import copy_accuracy
from ihlib.model.loading import load_model
from ihlib.report.book_costs import book_costs, cost_table

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
LANGUAGE_RECORD = json.loads((REPO / "ihlib/training/data/language_model/training.json").read_text())


def test_readme_quotes_the_training_records_copying_accuracy():
    """Every "copying 0.xxx" of the shipped language model in the README is training.json's, to 3 decimals."""
    recorded = f"{LANGUAGE_RECORD['evaluation']['copy_accuracy']:.3f}"
    quoted = re.search(r"top-1 copying accuracy on the second repeat[^:]*: (0\.\d{3}) \(`training\.json`", README)
    assert quoted, "the README no longer quotes the language model's copying accuracy with its source"
    assert quoted.group(1) == recorded
    shipped = re.search(r"\*\*copying (0\.\d{3}), word loss [\d.]+: the shipped recipe\*\*", README)
    assert shipped and shipped.group(1) == recorded


@pytest.mark.slow  # loads a model
def test_readme_quotes_the_pages_copying_accuracy_at_seed_0():
    """The README's second number, the page's at its default seed 0, is what `copy_accuracy(seed=0)` measures."""
    quoted = re.search(r"\(`training\.json`'s evaluation:.*?reads (0\.\d{3})", README, re.S)
    assert quoted, "the README no longer quotes the page's copying accuracy"
    measured = copy_accuracy(load_model("ihlib-language", device="cpu"), seed=0)
    assert quoted.group(1) == f"{measured:.3f}"


def test_readme_quotes_the_measured_cost_of_the_book_at_gpt2_small_shapes():
    """The README's table of the book on planted-gpt2-small is the committed record's, row by row (the page
    "This model and GPT-2" shows the record itself)."""
    start = README.index("| chapter (planted-gpt2-small) | seconds | status |")
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \| ([a-z ]+) \|$", README[start : README.index("\n\n", start)], re.M)
    expected = cost_table(book_costs())[["chapter", "seconds", "status"]].astype(str)
    assert rows == list(expected.itertuples(index=False, name=None))
