"""Every head's attention on one repeated sequence, as small multiples: one panel per head, one row per layer, each
panel framed in the colour of the head's kind by the book's counting rule (`ihlib.heads.head_table`).

At most `LAYERS_PER_FIGURE` layers go in one figure, so that a GPT-2-small-shaped model (12 x 12 heads) gives two
figures of page width whose panels still show the induction stripe and the previous-token diagonal.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from ihlib.heads.head_table import HeadTable
from ihlib.heads.scoring import AttentionExample, attention_example
from ihlib.model.errors import ParameterError
from ihlib.model.head_ids import all_heads, head_label
from ihlib.model.loading import AnyGPT2
from ihlib.report.figure_style import FONT_PT, PAGE_WIDTH_IN, fit_lines

LAYERS_PER_FIGURE = 6
ROLE_COLOURS = {
    "induction head": "tab:green",
    "shifting head": "tab:orange",
    "both": "tab:purple",
    "neither": "lightgrey",
}


def every_head_example(model: AnyGPT2, *, seg_len: int = 10, rep: int = 3, seed: int = 0) -> AttentionExample:
    """Attention `(n_layer * n_head, T, T)` of every head, layer by layer, on one sequence of `seg_len` x `rep`."""
    shape = (model.config.n_layer, model.config.n_head)
    heads = {head_label(layer, head): [layer, head] for layer, head in all_heads(shape)}
    return attention_example(model, heads, seg_len=seg_len, rep=rep, seed=seed)


def attention_grid(example: AttentionExample, n_layer: int, n_head: int) -> np.ndarray:
    """The example's patterns as `(n_layer, n_head, T, T)`; it must hold every head, layer by layer."""
    expected = [[layer, head] for layer in range(n_layer) for head in range(n_head)]
    if [list(pair) for pair in example.heads] != expected:
        raise ParameterError(
            f"The example holds {len(example.heads)} heads, not all {n_layer} x {n_head} in order: "
            "make it with `every_head_example(model)`."
        )
    t = example.attention.shape[-1]
    return example.attention.reshape(n_layer, n_head, t, t)


def plot_attention_gallery(example: AttentionExample, kinds: HeadTable) -> dict[str, plt.Figure]:
    """One panel per head (query rows, key columns, white 0 to black 1), framed by its kind; figures of at most
    `LAYERS_PER_FIGURE` layers, named `attention_gallery` (or `attention_gallery_layers_A_B` when split)."""
    roles = kinds.roles()
    n_layer, n_head = roles.shape
    grid = attention_grid(example, n_layer, n_head)
    starts = range(0, n_layer, LAYERS_PER_FIGURE)
    figures = {}
    for first in starts:
        last = min(first + LAYERS_PER_FIGURE, n_layer) - 1
        name = "attention_gallery" if len(starts) == 1 else f"attention_gallery_layers_{first}_{last}"
        shown = slice(first, last + 1)
        figures[name] = _gallery_figure(example, grid[shown], roles[shown], first, whole=len(starts) == 1)
    return figures


def _gallery_figure(
    example: AttentionExample, grid: np.ndarray, roles: np.ndarray, first_layer: int, *, whole: bool
) -> plt.Figure:
    """Draw layers `first_layer...` of `grid (layers, n_head, T, T)` as small multiples with a legend of the kinds
    of the heads it shows (and how many); `whole` when it shows every layer."""
    n_rows, n_head = roles.shape
    panel = (PAGE_WIDTH_IN - 0.6) / n_head
    fig, axes = plt.subplots(
        n_rows, n_head, figsize=(PAGE_WIDTH_IN, n_rows * panel + 1.6), squeeze=False, gridspec_kw={"wspace": 0.08}
    )
    for row in range(n_rows):
        for head in range(n_head):
            _draw_panel(axes[row, head], grid[row, head], ROLE_COLOURS[str(roles[row, head])], example.seg_len)
            if head == 0:
                axes[row, head].set_ylabel(f"layer {first_layer + row}", fontsize=FONT_PT - 1)
            if row == 0:
                axes[row, head].set_title(f"head {head}" if n_head <= 8 else f"H{head}", fontsize=FONT_PT - 1)
    counts = {role: int((roles == role).sum()) for role in ROLE_COLOURS}
    handles = [
        Patch(facecolor="white", edgecolor=colour, linewidth=2.5, label=f"{role} ({counts[role]})")
        for role, colour in ROLE_COLOURS.items()
        if counts[role]
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=FONT_PT - 1)
    layers = "every head" if whole else f"layers {first_layer}-{first_layer + n_rows - 1}"
    title = fit_lines(
        f"Attention of {layers} of {example.model} on one sequence: {example.seg_len} random tokens repeated "
        f"{example.rep} times. Frames: each head's kind by the book's counting rule."
    )
    fig.suptitle(title, fontsize=FONT_PT + 1)
    top_in = 0.35 + 0.2 * (title.count("\n") + 1)
    fig.set_figheight(n_rows * panel + 0.7 + top_in)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.6 / height, top=1 - top_in / height)
    return fig


def _draw_panel(ax: plt.Axes, pattern: np.ndarray, colour: str, seg_len: int) -> None:
    """One head's `(T, T)` pattern without ticks, grey lines between the copies, framed in `colour`."""
    ax.imshow(pattern, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    for boundary in range(seg_len, pattern.shape[-1], seg_len):
        ax.axhline(boundary - 0.5, color="tab:blue", linewidth=0.3, alpha=0.6)
        ax.axvline(boundary - 0.5, color="tab:blue", linewidth=0.3, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.5 if colour != ROLE_COLOURS["neither"] else 0.8)
