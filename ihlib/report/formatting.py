"""How numbers read on the pages: a mean with its interval on one line, and tables made for reading.

`reading_table` is the book's one table formatter: counts print as integers ("8", never "8.000"), other numbers with a
few significant digits, intervals on one line as "0.03 [0.02, 0.04]", missing values as a word ("n/a"), never
`nan` or `None`; it keeps at most `MAX_COLUMNS` columns, so that the table fits the text column at 1280 px (the
others stay in the saved data).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from ihlib.core.stats import Interval
from ihlib.model.errors import ParameterError

MISSING = "n/a"  # what a cell without a value reads
SIGNIFICANT = 3  # significant digits of a number that is not a count
MAX_COLUMNS = 7  # columns that fit the 720 px text column at 1280 px (index levels included)
CELL_PADDING = "0.1em 0.25em"  # space between columns, so that neighbouring numbers do not run together
NUMBER = r"[-+]?\d[\d.]*(?:e[-+]?\d+)?"
INTERVAL = re.compile(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]")  # "0.03 [0.02, 0.04]" inside a cell of words
NUMBER_LIKE = re.compile(r"[^A-Za-z]*|n/a")  # a cell without words: a number, an interval "0.03 [0.02, 0.04]"


def format_interval(value: Interval, signed: bool = False) -> str:
    """Format as "0.02 [0.01, 0.03]": a rate, its interval clipped to [0, 1]; or, when `signed`, a change as
    "+0.02 [-0.01, +0.05]". Values that round to zero print without a minus sign."""
    low, high = (value.low, value.high) if signed else (max(value.low, 0.0), min(value.high, 1.0))

    def fmt(number: float) -> str:
        return f"{round(number, 2) + 0.0:{'+' if signed else ''}.2f}"

    if math.isnan(value.low):
        return fmt(value.mean) + " (one repetition: no interval)"
    return f"{fmt(value.mean)} [{fmt(low)}, {fmt(high)}]"


def is_missing(value: object) -> bool:
    """True for None, NaN (float or numpy) and pandas' NA/NaT: a cell that has no value."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, Interval, Mapping, Sequence, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_number(value: float, *, digits: int = SIGNIFICANT) -> str:
    """A number with `digits` significant digits ("0.0312", "12.3"; "1.23e+07" beyond 6 digits or below 1e-4);
    whole numbers as integers ("8", "-3"); trailing zeros dropped ("0.5"); no minus sign on a zero."""
    if is_missing(value):
        return MISSING
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    if not 1e-4 <= abs(number) < 1e6:
        return f"{number:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(number))))
    text = f"{round(number, decimals) + 0.0:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if float(text) == 0 else text


def format_cell(value: object, *, digits: int = SIGNIFICANT, signed: bool = False) -> str:
    """One cell as text: MISSING for a missing value, an `Interval` on one line, booleans as yes/no, numbers by
    `format_number`, anything else as its `str`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, Interval):
        return format_interval(value, signed=signed)
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return format_number(float(value), digits=digits)
    return str(value)


def column_label(name: object) -> str:
    """A column name in words: underscores as spaces, e.g. `n_heads` -> "n heads"; a tuple (MultiIndex) joined."""
    if isinstance(name, tuple):
        return ", ".join(column_label(part) for part in name if str(part))
    return str(name).replace("_", " ")


def reading_frame(
    frame: pd.DataFrame,
    *,
    digits: int | Mapping[str, int] = SIGNIFICANT,
    signed: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
    max_columns: int | None = MAX_COLUMNS,
) -> pd.DataFrame:
    """`frame` as a frame of text cells: named index levels become the first columns, `columns` (default: all)
    kept in order, each cell by `format_cell` (`digits` per column, `signed` columns as changes "+0.02"),
    columns renamed by `labels` or `column_label`. Raises ParameterError when more than `max_columns` remain
    (None: no limit)."""
    named = [name for name in frame.index.names if name is not None]
    if not named and pd.api.types.is_string_dtype(frame.index):  # row labels without a name: kept, header blank
        frame, named = frame.rename_axis(""), [""]
    shown = frame.reset_index(level=named) if named else frame.reset_index(drop=True)
    if columns is not None:
        missing = [name for name in columns if name not in shown.columns]
        if missing:
            raise ParameterError(f"columns {missing} are not in the table; it has {list(shown.columns)}.")
        shown = shown[list(columns)]
    if max_columns is not None and shown.shape[1] > max_columns:
        raise ParameterError(
            f"A table of {shown.shape[1]} columns does not fit the text column (at most {max_columns}): pass "
            f"`columns=` with the ones the page needs; the others stay in the saved data."
        )
    cells = {
        (labels or {}).get(name, column_label(name)): [
            format_cell(value, digits=_digits_of(digits, name), signed=name in signed) for value in shown[name]
        ]
        for name in shown.columns
    }
    if len(cells) < shown.shape[1]:
        raise ParameterError(f"Two columns of {list(shown.columns)} get the same label: give `labels=` that differ.")
    return pd.DataFrame(cells, index=range(len(shown)))


def number_columns(text: pd.DataFrame) -> list[str]:
    """The columns of a text frame whose every cell is a number or an interval (no words; exponents allowed)."""
    plain = text.replace(r"\de[+-]\d", "", regex=True)
    return [name for name in text.columns if all(NUMBER_LIKE.fullmatch(cell) for cell in plain[name])]


def whole_intervals(cell: str) -> str:
    """`cell` with the spaces inside each interval made non-breaking, so that "0.03 [0.02, 0.04]" never wraps."""
    return INTERVAL.sub(lambda match: match.group(0).replace(" ", "\u00a0"), cell)


def reading_table(frame: pd.DataFrame, **options: object) -> Styler:
    """`reading_frame(frame, **options)` as a Styler without the index: numbers and intervals kept on one line,
    words wrapped so that the table fits the text column, and a line of space under it (the HTML a page shows)."""
    text = reading_frame(frame, **options).map(whole_intervals)  # type: ignore[arg-type]
    return (
        text.style.hide(axis="index")
        .set_properties(subset=number_columns(text), **{"white-space": "nowrap"})
        .set_table_styles(
            [
                {"selector": "th", "props": [("text-align", "left"), ("padding", CELL_PADDING)]},
                {"selector": "td", "props": [("padding", CELL_PADDING)]},
                {"selector": "", "props": [("margin-bottom", "1em")]},
            ]
        )
    )


def _digits_of(digits: int | Mapping[str, int], name: object) -> int:
    """The significant digits of column `name`: the one number, or its entry of the mapping (else SIGNIFICANT)."""
    if isinstance(digits, Mapping):
        return int(digits.get(name, SIGNIFICANT))
    return int(digits)
