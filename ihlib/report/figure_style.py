"""The book's figure style, shared by every figure: the text column's width, font sizes, layer colours, wrapping.

Every figure is at most `PAGE_WIDTH_IN` wide and uses text of at least 9 pt, so that it reads at the page's width.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt

PAGE_WIDTH_IN = 7.0  # width of the book's text column at 100 dpi, in inches
FONT_PT = 10
MAX_ANNOTATED_CELLS = 48  # heatmaps with more cells show colours only
LAYER_COLOURS = plt.get_cmap("tab10")
CHAR_EM = 0.62  # width of an average character of the default font (DejaVu Sans), in ems; bold is ~10% wider


def fit_lines(text: str, *, width_in: float = PAGE_WIDTH_IN, size: float = FONT_PT + 1, bold: bool = False) -> str:
    """Break every line of `text` at spaces so that it fits `width_in` inches (less a margin) at `size` points."""
    em = CHAR_EM * (1.1 if bold else 1.0)
    chars = max(12, int((width_in - 0.3) * 72 / (em * size)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())
