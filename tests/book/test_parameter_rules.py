"""Parameters are data, checked for type and range against one table, by the runner and by each chapter itself."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import papermill
import pytest

from ihlib.book.declarations import PARAMETER_RULES, checked_parameter, checked_parameters_of
from ihlib.book.params import declared_parameters, shared_parameters, typed_parameters
from ihlib.book.toc import chapter_notebooks
from ihlib.model.errors import BookError, IHLibError, ParameterError

REPO = Path(__file__).resolve().parents[2]
PAGES = [nb for nb in chapter_notebooks(REPO) if declared_parameters(REPO / nb)]


@pytest.mark.parametrize(
    "text",
    [
        "model_name: !!binary aGVsbG8=\n",
        "K0: !!python/object/apply:os.system ['echo pwned']\n",
        "ranks: !!set {2, 3}\n",
        "ranks: [2, !!binary aGVsbG8=]\n",
        "model_name: !!timestamp 2024-01-31\n",
    ],
)
def test_a_params_file_with_a_tag_that_is_not_plain_data_is_refused(tmp_path, text):
    """Bytes, objects, sets and dates never reach a chapter: the file is refused, naming the tag and position."""
    path = tmp_path / "p.yml"
    path.write_text(text)
    with pytest.raises(BookError, match=r"not valid YAML at line 1, column \d+: the tag .* is not plain data"):
        shared_parameters(path)


def test_an_unquoted_date_stays_text_and_an_int_parameter_refuses_it(tmp_path):
    """`seed: 2024-01-31` is the string it spells, then refused where a whole number is expected, naming seed."""
    path = tmp_path / "p.yml"
    path.write_text("seed: 2024-01-31\n")
    assert shared_parameters(path) == {"seed": "2024-01-31"}
    with pytest.raises(ParameterError, match=r"parameter seed='2024-01-31': the default in 03 is 0 \(int\)"):
        typed_parameters(shared_parameters(path), {"seed": 0}, chapter="03")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"- 1\n- 2\n", "must be a YAML mapping"), (b"\xff\xfe\x00bad", "cannot be read"), (None, "not a file")],
)
def test_a_params_file_that_is_a_list_binary_or_a_folder_is_one_clear_error(tmp_path, content, message):
    """A list, undecodable bytes or a folder given as `--params` is a BookError naming the file."""
    path = tmp_path / "p.yml"
    path.mkdir() if content is None else path.write_bytes(content)
    with pytest.raises(BookError, match=rf"Parameter file {path} .*{message}"):
        shared_parameters(path)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("n_exp", 1000.0, 1000),
        ("K0", None, None),
        ("K0", 2.0, 2),
        ("fraction", 1, 1.0),
        ("seed", 0, 0),
        ("ranks", [2.0, 3], [2, 3]),
        ("tolerance", 0.0, 0.0),
        ("unknown_name", b"x".decode(), "x"),
    ],
)
def test_values_inside_their_rule_pass_typed(name, value, expected):
    """A whole-number float is an int where an int is expected; None passes where the rule allows it."""
    checked = checked_parameter(name, value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("n_exp", 0, r"parameter n_exp=0 is out of range: n_exp is a whole number, at least 1\."),
        ("n_exp", -3, r"n_exp=-3 is out of range"),
        ("K0", 2.7, r"parameter K0=2\.7: K0 is a whole number, at least 1 \(or None\), not 2\.7\."),
        ("seed", -1, r"seed=-1 is out of range: seed is a whole number in \[0, 4294967295\]"),
        ("seed", 2**40, r"seed=1099511627776 is out of range"),
        ("fraction", 0.0, r"fraction=0\.0 is out of range: fraction is a number in \(0, 1\]"),
        ("fraction", math.nan, r"fraction=nan is out of range"),
        ("n_exp", math.inf, r"n_exp=inf: n_exp is a whole number"),
        ("rep", 1, r"rep=1 is out of range: rep is a whole number, at least 2 \(a segment must repeat at least once\)"),
        ("K_min", 1, r"K_min=1 is out of range.*a shuffle needs 2 heads"),
        ("ranks", [2, 0], r"ranks=\[2, 0\] is out of range: each item of ranks is a whole number, at least 1"),
        ("ranks", 3, r"parameter ranks=3: ranks is a list, each item a whole number, at least 1, not 3"),
        ("cross_fit", 1, r"cross_fit=1: cross_fit is true or false"),
        ("model_name", b"echo", r"parameter model_name: b'echo' \(bytes\) is not plain data"),
        ("chapters", ["01", 2], r"parameter chapters=\['01', 2\]: each item of chapters is a string, not 2"),
    ],
)
def test_values_outside_their_rule_are_refused_naming_the_parameter(name, value, message):
    with pytest.raises(ParameterError, match=message):
        checked_parameter(name, value)


@pytest.mark.parametrize("notebook", PAGES, ids=lambda nb: nb.stem)
def test_every_page_parameter_has_a_rule_its_default_passes_and_the_page_checks_it(notebook):
    """Each name in a page's parameters cell has a rule; the default satisfies it; the cell right after the
    parameters applies the rules (`checked_parameters_of`)."""
    declared = declared_parameters(REPO / notebook)
    assert sorted(set(declared) - set(PARAMETER_RULES)) == []
    assert checked_parameters_of(declared) == declared
    cells = nbformat.read(REPO / notebook, as_version=4).cells
    at = next(i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", []))
    assert "globals().update(checked_parameters_of(globals()))" in cells[at + 1].source


@pytest.mark.slow
def test_a_chapter_run_directly_with_papermill_refuses_a_bad_parameter_with_the_runners_message(tmp_path):
    """`papermill book/03_shuffling.ipynb out.ipynb -p n_exp 0` stops at the check cell with the runner's message."""
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(
            str(REPO / "book" / "03_shuffling.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"n_exp": 0},
            cwd=str(tmp_path),
            progress_bar=False,
        )
    assert raised.value.ename == "ParameterError"
    with pytest.raises(IHLibError) as expected:
        checked_parameter("n_exp", 0)
    assert raised.value.evalue == str(expected.value)
