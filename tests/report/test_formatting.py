"""The shared table formatter: counts as integers, a few significant digits, intervals on one line, no nan/None."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ihlib.core.stats import Interval
from ihlib.model.errors import ParameterError
from ihlib.report.formatting import (
    CELL_PADDING,
    MISSING,
    format_cell,
    format_interval,
    format_number,
    number_columns,
    reading_frame,
    reading_table,
    whole_intervals,
)
from ihlib.report.table_style import table


def test_counts_stored_as_floats_print_as_integers():
    assert [format_number(v) for v in (8.0, 0.0, -3.0, 108.0, np.float32(4.0))] == ["8", "0", "-3", "108", "4"]


def test_other_numbers_keep_three_significant_digits():
    assert [format_number(v) for v in (0.031234, 12.345, 0.5, 3.14159, 1234.5, 0.00012345)] == [
        "0.0312",
        "12.3",
        "0.5",
        "3.14",
        "1234",
        "0.000123",
    ]
    assert format_number(0.031234, digits=2) == "0.031"
    assert format_number(2.51234e7 + 0.5) == "2.51e+07" and format_number(2.5e7) == "25000000"
    assert format_number(-1.234e-30) == "-1.23e-30"


def test_missing_values_read_as_a_word_never_nan_or_none():
    for value in (None, float("nan"), np.nan, pd.NA, np.float64("nan")):
        assert format_cell(value) == MISSING
    assert format_number(float("inf")) == "∞"


def test_intervals_print_on_one_line():
    assert format_cell(Interval(0.031, 0.021, 0.041)) == "0.03 [0.02, 0.04]"
    assert format_cell(Interval(0.02, -0.01, 0.05), signed=True) == "+0.02 [-0.01, +0.05]"
    assert format_interval(Interval(0.5, math.nan, math.nan)) == "0.50 (one repetition: no interval)"


def test_reading_frame_formats_each_column_and_labels_it_in_words():
    frame = pd.DataFrame(
        {
            "n_heads": [8.0, 108.0, np.nan],
            "z_score": [1.23456, None, -0.5],
            "change": [Interval(0.02, -0.01, 0.05), Interval(0.1, 0.05, 0.15), None],
            "kind": ["induction", None, "shifting"],
        },
        index=pd.Index([0, 1, 2], name="layer"),
    )
    text = reading_frame(frame, signed=("change",), labels={"z_score": "diagonal z-score"})
    assert list(text.columns) == ["layer", "n heads", "diagonal z-score", "change", "kind"]
    assert text["n heads"].tolist() == ["8", "108", MISSING]
    assert text["diagonal z-score"].tolist() == ["1.23", MISSING, "-0.5"]
    assert text["change"].tolist() == ["+0.02 [-0.01, +0.05]", "+0.10 [+0.05, +0.15]", MISSING]
    assert text["kind"].tolist() == ["induction", MISSING, "shifting"]
    html = reading_table(frame).to_html()
    assert "nan" not in html.lower().replace("n/a", "") and "None" not in html and "8.000" not in html


def test_per_column_digits_and_chosen_columns():
    frame = pd.DataFrame({"a": [0.123456], "b": [0.123456], "c": [1.0]})
    text = reading_frame(frame, digits={"a": 2, "b": 4}, columns=["b", "a"])
    assert text.iloc[0].tolist() == ["0.1235", "0.12"]


def test_a_table_wider_than_the_text_column_is_refused_with_advice():
    wide = pd.DataFrame([range(9)], columns=[f"c{i}" for i in range(9)])
    with pytest.raises(ParameterError, match="columns="):
        reading_frame(wide)
    assert reading_frame(wide, columns=["c0", "c8"]).shape == (1, 2)
    with pytest.raises(ParameterError, match="not in the table"):
        reading_frame(wide, columns=["missing"])


def test_the_pages_table_helper_keeps_every_column_and_formats_counts():
    frame = pd.DataFrame([[8.0, 0.12345, None] * 3], columns=[f"c{i}" for i in range(9)])
    html = table(frame).to_html()
    assert ">8<" in html and ">0.123<" in html and "None" not in html and "8.000" not in html


def test_numbers_and_intervals_stay_on_one_line_while_words_wrap():
    frame = pd.DataFrame(
        {
            "error": [0.0312, None],
            "change": ["+0.02 [-0.01, +0.05]", "1.2e+07"],
            "verdict": ["partly supported", "n/a"],
            "scope": ["top-1 copying on repeated random tokens", "direct path"],
        }
    )
    assert number_columns(reading_frame(frame)) == ["error", "change"]
    assert f"padding: {CELL_PADDING}" in reading_table(frame).to_html()  # neighbouring numbers do not run together
    styles = reading_table(frame)._compute().ctx  # (row, column) -> CSS properties of each cell
    assert sorted({column for (_, column), props in styles.items() if ("white-space", "nowrap") in props}) == [0, 1]


def test_an_interval_inside_words_never_wraps():
    assert whole_intervals("error change (shuffle): +0.01 [+0.00, +0.02].") == (
        "error change (shuffle): +0.01\u00a0[+0.00,\u00a0+0.02]."
    )
    words = "Claim 1 (diagonal) [direct weight path (W_qk, W_ov)]"
    assert whole_intervals(words) == words  # brackets of words still wrap
    frame = pd.DataFrame({"key number": ["copying error: 0.03 [0.02, 0.04]"]})
    assert "0.03\u00a0[0.02,\u00a00.04]" in reading_table(frame).to_html()


def test_row_labels_are_kept_as_the_first_column_and_a_plain_range_index_is_dropped():
    labelled = pd.DataFrame({"diagonal": ["supported", "not supported"]}, index=["direct", "one-layer"])
    assert reading_frame(labelled).to_dict(orient="list") == {
        "": ["direct", "one-layer"],
        "diagonal": ["supported", "not supported"],
    }
    assert list(reading_frame(pd.DataFrame({"a": [1.0, 2.0]}))) == ["a"]
