"""How the book shows a table: an HTML table without the pandas index, numbers rounded."""

from __future__ import annotations

import pandas as pd
from pandas.io.formats.style import Styler


def table(frame: pd.DataFrame, *, precision: int = 3) -> Styler:
    """Show `frame` without its index: named index levels become the first columns; floats to `precision`."""
    named = [name for name in frame.index.names if name is not None]
    shown = frame.reset_index(level=named) if named else frame
    return shown.style.hide(axis="index").format(precision=precision)
