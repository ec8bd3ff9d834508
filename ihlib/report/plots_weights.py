"""Figures for claims 1 and 2 (weight space): `W_qkov` blocks, diagonal z-scores, subspace matching with baselines,
and the composition scores of every composable head pair.

Every figure is at most `PAGE_WIDTH_IN` wide with text of at least 9 pt, so that it stays legible when the page
shows it at full width; figures grow taller, not wider, with the number of panels or listed heads.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import patheffects
from matplotlib.patches import Rectangle

from ihlib.claims.diagonal import SEED_Z_THRESHOLD, QKOVMatching, QKOVZScores
from ihlib.claims.subspaces import HeadSpectra, SubspaceMatching
from ihlib.core.circuits import CompositionScores
from ihlib.model.head_ids import head_label, head_labels
from ihlib.report.figure_style import FONT_PT, PAGE_WIDTH_IN, fit_lines

PANEL_COLUMNS = 2  # panels side by side at page width
MAX_HEAD_LABELS = 12  # a heatmap axis with more heads labels every second (third, ...) head
MAX_ANNOTATED_COLUMNS = 12  # the z-score heatmap writes each value in its cell up to this many columns
AXIS_NAMES = {"IH": "IH (key side of W_qk)", "SH": "SH (output side of W_ov)"}
BASELINE_COLOURS = {"Gaussian subspaces": "tab:grey", "random heads": "tab:orange"}


def plot_qkov_blocks(result: QKOVMatching) -> dict[str, plt.Figure]:
    """One figure per basis: a `block x block` heatmap of `W_qkov` per `(IH, SH)` pair, z-score in the title."""
    figures = {"qkov_residual": _qkov_grid(result.residual_blocks, result.residual_z, result, "residual coordinates")}
    if result.embedding_blocks is not None:
        figures["qkov_embedding"] = _qkov_grid(
            result.embedding_blocks, result.embedding_z, result, "principal directions of W_E (largest first)"
        )
    return figures


def _qkov_grid(blocks: np.ndarray, zscores: np.ndarray, result: QKOVMatching, basis: str) -> plt.Figure:
    """Heatmaps of the blocks `(P, b, b)`, `PANEL_COLUMNS` per row (an IH's partners side by side), each with its own
    colour scale symmetric around 0."""
    n = len(blocks)
    n_cols = min(n, PANEL_COLUMNS)
    n_rows = math.ceil(n / n_cols)
    size = (PAGE_WIDTH_IN * n_cols / PANEL_COLUMNS, 3.1 * n_rows + 0.9)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=size, squeeze=False, layout="constrained")
    for ax, block, z, (ih, sh) in zip(axes.flat, blocks, zscores, result.pairs, strict=False):
        vmax = float(np.abs(block).max()) or 1.0
        image = ax.imshow(block, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.85, label="entry of W_qkov")
        ax.set_title(f"{head_label(*ih)} x {head_label(*sh)}: z = {z:.2f}")
        ax.set_xlabel("source direction (SH input)")
        ax.set_ylabel("query direction (IH)")
    for ax in axes.flat[n:]:
        ax.axis("off")
    title = (
        f"W_qkov = W_qk(IH) W_ov(SH), first {result.block} {basis}; z = diagonal z-score of the full matrix\n"
        f"partners: {result.partner_rule}"
    )
    fig.suptitle(fit_lines(title), fontsize=FONT_PT + 1)
    return fig


def plot_qkov_zscores(result: QKOVZScores) -> dict[str, plt.Figure]:
    """Heatmap of the `(K0, K1)` diagonal z-scores and a histogram against the random-head-pair baseline."""
    return {"qkov_zscores_heatmap": _zscore_heatmap(result), "qkov_zscores_hist": _zscore_histogram(result)}


def _zscore_heatmap(result: QKOVZScores) -> plt.Figure:
    """Z-score heatmap, rows IHs, columns shifting heads, colours symmetric around 0; pairs with SH not below IH
    hatched; the colour bar marks the random pairs' 95th percentile (dashed) and the seed's z = 2 (dotted)."""
    k0, k1 = result.zscores.shape
    q95 = float(np.percentile(result.baseline, 95))
    limit = 1.1 * max(float(np.abs(result.zscores).max()), abs(q95), SEED_Z_THRESHOLD)  # both marks inside
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 2.4 + 0.3 * k0), layout="constrained")
    sns.heatmap(
        result.zscores,
        ax=ax,
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        annot=k1 <= MAX_ANNOTATED_COLUMNS,
        fmt=".1f",
        annot_kws={"fontsize": FONT_PT - 1},
        xticklabels=head_labels(result.Shifting_list),
        yticklabels=head_labels(result.IH_list),
        cbar_kws={"label": "diagonal z-score\n(dashed: random pairs' 95th pct;\ndotted: z = 2)"},
    )
    colour_bar = ax.collections[0].colorbar.ax
    outline = [patheffects.withStroke(linewidth=4, foreground="white")]
    colour_bar.axhline(q95, color="black", linestyle="--", linewidth=1.5, path_effects=outline)
    colour_bar.axhline(SEED_Z_THRESHOLD, color="tab:blue", linestyle=":", linewidth=2, path_effects=outline)
    for i, j in zip(*np.nonzero(~result.composable), strict=True):
        ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="grey", linewidth=0))
    ax.tick_params(axis="x", labelrotation=0 if k1 <= 8 else 90)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("shifting head (W_ov)")
    ax.set_ylabel("induction head (W_qk)")
    ax.set_title("Diagonal z-score of W_qk(IH) W_ov(SH)\n(hatched: SH not in an earlier layer)")
    return fig


def _zscore_histogram(result: QKOVZScores) -> plt.Figure:
    """Histogram of listed-pair z-scores over the random-head-pair baseline, with z = 2 and the baseline's 95th."""
    listed, baseline = result.zscores.ravel(), result.baseline
    bins = np.histogram_bin_edges(np.concatenate([listed, baseline]), bins=40)
    q95 = float(np.percentile(baseline, 95))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 4), layout="constrained")
    ax.hist(baseline, bins=bins, density=True, alpha=0.5, color="grey", label=f"random head pairs (n={baseline.size})")
    ax.hist(
        listed, bins=bins, density=True, alpha=0.6, color="tab:red", label=f"listed IH x SH pairs (n={listed.size})"
    )
    ax.axvline(q95, color="black", linestyle="--", label=f"baseline 95th percentile ({q95:.2f})")
    ax.axvline(SEED_Z_THRESHOLD, color="tab:blue", linestyle=":", label="z = 2")
    ax.set_xlabel("diagonal z-score of W_qk W_ov")
    ax.set_ylabel("density")
    ax.set_title("Diagonal z-scores: listed pairs vs random head pairs")
    ax.legend(fontsize=FONT_PT - 1)
    return fig


def plot_subspace_matching(result: SubspaceMatching) -> dict[str, plt.Figure]:
    """One figure per method, one row per rank: the listed pairs' heatmap (left), their histogram over both
    baselines (right)."""
    return {f"subspace_matching_{m}": _matching_figure(result, i) for i, m in enumerate(result.methods)}


def _matching_figure(result: SubspaceMatching, method_index: int) -> plt.Figure:
    """Heatmaps and histograms of one method's scores, a row per rank; one legend below for the histograms."""
    n_ranks = len(result.ranks)
    side = min(2.0, max(1.4, 0.17 * max(len(result.row_heads), len(result.col_heads))))  # heatmap height, inches
    fig, axes = plt.subplots(
        n_ranks,
        2,
        figsize=(PAGE_WIDTH_IN, n_ranks * (side + 1.2) + 1.3),
        squeeze=False,
        width_ratios=(1.2, 1.0),
        layout="constrained",
    )
    pairs = result.pair_scores()[method_index]
    bins = np.linspace(0.0, 1.0, 31)
    for j in range(n_ranks):
        _matching_heatmap(fig, axes[j, 0], result, method_index, j)
        _matching_histogram(axes[j, 1], pairs[j], result, method_index, j, bins)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=FONT_PT - 1, frameon=False)
    title = (
        f"Subspace matching {result.mode}, score '{result.methods[method_index]}'; baselines: Gaussian subspaces "
        f"and random heads ({result.head_pool})"
    )
    fig.suptitle(fit_lines(title), fontsize=FONT_PT + 1)
    return fig


def _matching_heatmap(
    fig: plt.Figure, ax: plt.Axes, result: SubspaceMatching, method_index: int, rank_index: int
) -> None:
    """Scores `(K0, K1)` of one method and rank on 0..1; both baselines' 95th percentiles marked on the colour bar."""
    method, rank = result.methods[method_index], result.ranks[rank_index]
    row_kind, col_kind = result.mode.split(" x ")
    image = ax.imshow(result.s_match[method_index, rank_index], vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    colour_bar = fig.colorbar(image, ax=ax, aspect=12, label=f"'{method}' score\n(lines: baselines'\n95th pct)")
    outline = [patheffects.withStroke(linewidth=4.5, foreground="white")]
    for name, values in _baselines(result, method_index, rank_index):
        level = np.percentile(values, 95)
        colour_bar.ax.axhline(level, color=BASELINE_COLOURS[name], linewidth=2.5, path_effects=outline)
    _label_heads(ax, result.row_heads, result.col_heads)
    ax.set_xlabel(AXIS_NAMES[col_kind])
    ax.set_ylabel(AXIS_NAMES[row_kind])
    ax.set_title(f"rank {rank}: listed pairs")


def _label_heads(ax: plt.Axes, rows: list, cols: list) -> None:
    """Label a heatmap's rows and columns `L{layer}H{head}`: every head, or every k-th when more than
    `MAX_HEAD_LABELS`."""
    for heads, set_ticks, rotation in ((cols, ax.set_xticks, 90), (rows, ax.set_yticks, 0)):
        shown = range(0, len(heads), math.ceil(len(heads) / MAX_HEAD_LABELS))
        set_ticks(shown, [head_label(*heads[i]) for i in shown], rotation=rotation)


def _baselines(result: SubspaceMatching, method_index: int, ranks: int | slice) -> list[tuple[str, np.ndarray]]:
    """Both baselines' scores of one method, `(N,)` at one rank or `(R, N)` for a slice, named as `BASELINE_COLOURS`."""
    return [
        ("Gaussian subspaces", result.gaussian_baseline[method_index, ranks]),
        ("random heads", result.head_baseline[method_index, ranks]),
    ]


def _matching_histogram(
    ax: plt.Axes, listed: np.ndarray, result: SubspaceMatching, method_index: int, rank_index: int, bins: np.ndarray
) -> None:
    """Histogram of listed-pair scores over both baselines; dashed lines at each baseline's 95th percentile."""
    method, rank = result.methods[method_index], result.ranks[rank_index]
    for label, values in _baselines(result, method_index, rank_index):
        colour = BASELINE_COLOURS[label]
        ax.hist(values, bins=bins, density=True, alpha=0.45, color=colour, label=f"{label} (n={values.size})")
        ax.axvline(np.percentile(values, 95), color=colour, linestyle="--", linewidth=1.2, label=f"{label}: 95th pct")
    ax.hist(listed, bins=bins, density=True, alpha=0.6, color="tab:blue", label=f"listed pairs (n={listed.size})")
    ax.set_xlabel(f"'{method}' score")
    ax.set_ylabel("density")
    ax.set_title(f"rank {rank}: distributions")


def plot_matching_overview(results: list[SubspaceMatching]) -> dict[str, plt.Figure]:
    """Listed-pair median (band: 25th-75th percentile) against rank, with both baselines' mean and 95th percentile.

    One row per comparison (IH x IH, SH x SH, IH x SH), one column per method.
    """
    methods = results[0].methods
    fig, axes = plt.subplots(
        len(results),
        len(methods),
        figsize=(PAGE_WIDTH_IN, 2.5 * len(results) + 1.6),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for row, result in enumerate(results):
        pairs = result.pair_scores()
        x = np.arange(len(result.ranks))
        for col, method in enumerate(methods):
            ax, m = axes[row, col], result.methods.index(method)
            for label, values in _baselines(result, m, slice(None)):
                colour = BASELINE_COLOURS[label]
                ax.plot(x, values.mean(-1), color=colour, linewidth=1.2, label=f"{label}: mean")
                ax.plot(x, np.percentile(values, 95, axis=-1), color=colour, linestyle="--", label=f"{label}: 95th pct")
            if pairs.shape[-1]:
                low, median, high = np.percentile(pairs[m], [25, 50, 75], axis=-1)
                ax.fill_between(x, low, high, color="tab:blue", alpha=0.25, label="listed pairs: 25th-75th pct")
                ax.plot(x, median, "-o", color="tab:blue", label="listed pairs: median")
            ax.set_xticks(x, [str(r) for r in result.ranks])
            ax.set_ylim(0.0, 1.02)
            ax.set_xlabel("rank r (directions compared)")
            ax.set_ylabel(f"'{method}' score")
            ax.set_title(f"{result.mode}, '{method}' ({pairs.shape[-1]} pairs)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=FONT_PT - 1, frameon=False)
    title = "Subspace matching of the listed heads against random heads and random Gaussian subspaces"
    fig.suptitle(fit_lines(title), fontsize=FONT_PT + 1)
    return {"matching_overview": fig}


def plot_energy_profiles(spectra: HeadSpectra) -> dict[str, plt.Figure]:
    """Cumulative share of squared singular values: one line per listed head over the band of all heads.

    One panel per side (key side of the IHs' `W_qk` above, output side of the shifting heads' `W_ov` below).
    """
    panels = {side: (spectra.listed[side], spectra.everyone[side], spectra.heads[side]) for side in spectra.listed}
    titles = {"key": "W_qk of the listed IHs (key side)", "output": "W_ov of the listed shifting heads (output side)"}
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(PAGE_WIDTH_IN, 3.2 * len(panels) + 0.5), squeeze=False, layout="constrained"
    )
    for ax, (side, (listed, everyone, heads)) in zip(axes[:, 0], panels.items(), strict=True):
        r = np.arange(1, listed.shape[-1] + 1)
        low, median, high = np.percentile(everyone, [5, 50, 95], axis=0)
        ax.fill_between(r, low, high, color="tab:grey", alpha=0.3, label="all heads: 5th-95th pct")
        ax.plot(r, median, color="tab:grey", linestyle="--", label="all heads: median")
        colours = plt.get_cmap("tab10" if len(heads) <= 10 else "tab20")
        for i, (profile, (layer, head)) in enumerate(zip(listed, heads, strict=True)):
            ax.plot(r, profile, linewidth=1.0, alpha=0.85, color=colours(i % colours.N), label=head_label(layer, head))
        for rank in spectra.ranks:
            ax.axvline(rank, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlabel("top singular directions r (dotted: ranks compared)")
        ax.set_ylabel("share of squared\nsingular values")
        ax.set_ylim(0.0, 1.02)
        ax.set_title(titles[side])
        n_entries = len(heads) + 2
        ax.legend(fontsize=FONT_PT - 1, ncol=math.ceil(n_entries / 12), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("How much of each head's matrix its top r singular directions hold", fontsize=FONT_PT + 1)
    return {"energy_profiles": fig}


COMPOSITION_NAMES = {"Q": "Q-composition", "K": "K-composition", "V": "V-composition"}
MAX_TICKED_HEADS = 48  # a composition axis with more heads ticks each layer's first head and the listed heads


def plot_composition_scores(
    result: CompositionScores, *, IH_list: list | tuple = (), Shifting_list: list | tuple = ()
) -> dict[str, plt.Figure]:
    """Per kind a heatmap of receiving heads (rows, layers 1..) by sending heads (columns, earlier layers).

    One colour scale for all kinds (0 to the largest score); blank cells cannot compose; thin lines separate layers;
    listed IHs (rows) and shifting heads (columns) are labelled in colour (up to `MAX_TICKED_HEADS` heads per axis;
    beyond, each layer is ticked) and their pairs outlined.
    """
    n_layer, n_head = result.shape
    kinds = list(result.scores)
    vmax = max(float(np.nanmax(grid)) for grid in result.scores.values())
    side = min(PAGE_WIDTH_IN - 1.2, 0.25 * n_head * (n_layer - 1) + 1.0)
    fig, axes = plt.subplots(
        len(kinds), 1, figsize=(PAGE_WIDTH_IN, len(kinds) * (side + 0.9) + 0.6), squeeze=False, layout="constrained"
    )
    receivers = [[l, h] for l in range(1, n_layer) for h in range(n_head)]
    senders = [[l, h] for l in range(n_layer - 1) for h in range(n_head)]
    listed = {"rows": [list(h) for h in IH_list], "cols": [list(h) for h in Shifting_list]}
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        grid = result.scores[kind][1:, :, : n_layer - 1].reshape(len(receivers), len(senders))
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest", aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.9, label=COMPOSITION_NAMES[kind])
        for boundary in range(1, n_layer - 1):
            ax.axhline(boundary * n_head - 0.5, color="white", linewidth=0.6)
            ax.axvline(boundary * n_head - 0.5, color="white", linewidth=0.6)
        _tick_heads(ax, receivers, listed["rows"], "tab:red", axis="y")
        _tick_heads(ax, senders, listed["cols"], "tab:blue", axis="x")
        _outline_listed_pairs(ax, receivers, senders, listed)
        ax.set_ylabel("receiving head (reads)")
        ax.set_xlabel("sending head (writes, earlier layer)")
        ax.set_title(f"{COMPOSITION_NAMES[kind]} of every composable pair")
    title = (
        "Which heads compose. Outlined: pairs of a listed induction head (red label) and a listed shifting head "
        "(blue label)"
    )
    fig.suptitle(fit_lines(title), fontsize=FONT_PT + 1)
    return {"composition_scores": fig}


def _tick_heads(ax: plt.Axes, heads: list, listed: list, colour: str, *, axis: str) -> None:
    """Tick every head, listed heads in bold `colour`; beyond `MAX_TICKED_HEADS` heads, tick each layer ("L3") only."""
    if len(heads) > MAX_TICKED_HEADS:
        keep = [i for i, h in enumerate(heads) if h[1] == 0]
        labels = [f"L{heads[i][0]}" for i in keep]
    else:
        keep, labels = list(range(len(heads))), head_labels(heads)
    set_ticks, get_labels = (ax.set_yticks, ax.get_yticklabels) if axis == "y" else (ax.set_xticks, ax.get_xticklabels)
    set_ticks(keep, labels, fontsize=FONT_PT - 1, rotation=0 if axis == "y" else 90)
    tick_labels = get_labels()
    for i, label in zip(keep, tick_labels, strict=True):
        if heads[i] in listed and len(heads) <= MAX_TICKED_HEADS:
            label.set_color(colour)
            label.set_fontweight("bold")


def _outline_listed_pairs(ax: plt.Axes, receivers: list, senders: list, listed: dict[str, list]) -> None:
    """Outline the cells of listed IH x listed shifting-head pairs that can compose."""
    for ih in listed["rows"]:
        for sh in listed["cols"]:
            if ih in receivers and sh in senders and sh[0] < ih[0]:
                i, j = receivers.index(ih), senders.index(sh)
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=1.2))
