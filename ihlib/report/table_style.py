"""How the book shows a table: `formatting.reading_table` without a column limit, for the pages' existing calls."""

from __future__ import annotations

import pandas as pd
from pandas.io.formats.style import Styler

from ihlib.report.formatting import reading_table


def table(frame: pd.DataFrame, *, precision: int = 3) -> Styler:
    """Show `frame` without its index (named index levels become the first columns), counts as integers, other
    numbers to `precision` significant digits, missing values as "n/a"; every column kept (prefer
    `reading_table(frame, columns=...)` for a table that must fit the text column)."""
    return reading_table(frame, digits=precision, max_columns=None)
