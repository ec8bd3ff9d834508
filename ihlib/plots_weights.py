"""Figures for claims 1 and 2 (weight space): `W_qkov` blocks, diagonal z-scores, subspace matching with baselines."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Rectangle

from ihlib.diagonal import SEED_Z_THRESHOLD, QKOVMatching, QKOVZScores
from ihlib.heads import head_label, head_labels
from ihlib.subspaces import HeadSpectra, SubspaceMatching

PANEL_COLUMNS = 4
AXIS_NAMES = {"IH": "IH (key side of W_qk)", "SH": "shifting head (output side of W_ov)"}


def plot_qkov_blocks(result: QKOVMatching) -> dict[str, plt.Figure]:
    """One figure per basis: a `block x block` heatmap of `W_qkov` per `(IH, SH)` pair, z-score in the title."""
    figures = {"qkov_residual": _qkov_grid(result.residual_blocks, result.residual_z, result, "residual coordinates")}
    if result.embedding_blocks is not None:
        figures["qkov_embedding"] = _qkov_grid(
            result.embedding_blocks, result.embedding_z, result, "principal directions of W_E (largest first)"
        )
    return figures


def _qkov_grid(blocks: np.ndarray, zscores: np.ndarray, result: QKOVMatching, basis: str) -> plt.Figure:
    """Grid of symmetric-colour heatmaps `(P, b, b)`, one per pair."""
    n = len(blocks)
    n_cols = min(n, PANEL_COLUMNS)
    n_rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.1 * n_rows + 0.8), squeeze=False)
    for ax, block, z, (ih, sh) in zip(axes.flat, blocks, zscores, result.pairs, strict=False):
        vmax = float(np.abs(block).max()) or 1.0
        image = ax.imshow(block, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.75)
        ax.set_title(f"{head_label(*ih)} x {head_label(*sh)}  z = {z:.2f}", fontsize=9)
        ax.set_xlabel("source direction (SH input)", fontsize=8)
        ax.set_ylabel("query direction (IH)", fontsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(
        f"W_qkov = W_qk(IH) W_ov(SH), first {result.block} {basis}; z = diagonal z-score of the full matrix\n"
        f"partners: {result.partner_rule}"
    )
    fig.tight_layout()
    return fig


def plot_qkov_zscores(result: QKOVZScores) -> dict[str, plt.Figure]:
    """Heatmap of the `(K0, K1)` diagonal z-scores and a histogram against the random-head-pair baseline."""
    return {"qkov_zscores_heatmap": _zscore_heatmap(result), "qkov_zscores_hist": _zscore_histogram(result)}


def _zscore_heatmap(result: QKOVZScores) -> plt.Figure:
    """Annotated z-score heatmap, rows IHs, columns shifting heads; pairs with SH not below IH hatched."""
    k0, k1 = result.zscores.shape
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * k1, 1.5 + 0.45 * k0))
    sns.heatmap(
        result.zscores,
        ax=ax,
        cmap="RdBu_r",
        center=0.0,
        annot=max(k0, k1) <= 20,
        fmt=".1f",
        annot_kws={"fontsize": 7},
        xticklabels=head_labels(result.Shifting_list),
        yticklabels=head_labels(result.IH_list),
        cbar_kws={"label": "diagonal z-score"},
    )
    for i, j in zip(*np.nonzero(~result.composable), strict=True):
        ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="grey", linewidth=0))
    ax.set_xlabel("shifting head (W_ov)")
    ax.set_ylabel("induction head (W_qk)")
    ax.set_title("Diagonal z-score of W_qk(IH) W_ov(SH) (hatched: SH not in an earlier layer)")
    fig.tight_layout()
    return fig


def _zscore_histogram(result: QKOVZScores) -> plt.Figure:
    """Histogram of listed-pair z-scores over the random-head-pair baseline, with z = 2 and the baseline's 95th."""
    listed, baseline = result.zscores.ravel(), result.baseline
    bins = np.histogram_bin_edges(np.concatenate([listed, baseline]), bins=40)
    q95 = float(np.percentile(baseline, 95))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(baseline, bins=bins, density=True, alpha=0.5, color="grey", label=f"random head pairs (n={baseline.size})")
    ax.hist(
        listed, bins=bins, density=True, alpha=0.6, color="tab:red", label=f"listed IH x SH pairs (n={listed.size})"
    )
    ax.axvline(q95, color="black", linestyle="--", label=f"baseline 95th percentile ({q95:.2f})")
    ax.axvline(SEED_Z_THRESHOLD, color="tab:blue", linestyle=":", label="z = 2")
    ax.set_xlabel("diagonal z-score of W_qk W_ov")
    ax.set_ylabel("density")
    ax.set_title("Diagonal z-scores: listed pairs vs random head pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_subspace_matching(result: SubspaceMatching) -> dict[str, plt.Figure]:
    """One figure per method: heatmaps (top row), histograms with both baselines (bottom row), a column per rank."""
    return {f"subspace_matching_{m}": _matching_figure(result, i) for i, m in enumerate(result.methods)}


def _matching_figure(result: SubspaceMatching, method_index: int) -> plt.Figure:
    """Heatmaps and histograms of one method's scores across ranks."""
    method = result.methods[method_index]
    row_kind, col_kind = result.mode.split(" x ")
    n_ranks = len(result.ranks)
    fig, axes = plt.subplots(2, n_ranks, figsize=(4.2 * n_ranks, 8), squeeze=False)
    pairs = result.pair_scores()[method_index]
    bins = np.linspace(0.0, 1.0, 31)
    for j, rank in enumerate(result.ranks):
        ax = axes[0, j]
        image = ax.imshow(result.s_match[method_index, j], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(result.col_heads)), head_labels(result.col_heads), rotation=90, fontsize=7)
        ax.set_yticks(range(len(result.row_heads)), head_labels(result.row_heads), fontsize=7)
        ax.set_xlabel(AXIS_NAMES[col_kind], fontsize=8)
        ax.set_ylabel(AXIS_NAMES[row_kind], fontsize=8)
        ax.set_title(f"rank {rank}")
        fig.colorbar(image, ax=ax, shrink=0.8, label=f"{method} score")
        _matching_histogram(axes[1, j], pairs[j], result, method_index, j, bins)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(
        f"Subspace matching {result.mode}, method '{method}'; baselines: Gaussian subspaces and random heads "
        f"({result.head_pool})"
    )
    fig.tight_layout()
    return fig


def _matching_histogram(
    ax: plt.Axes, listed: np.ndarray, result: SubspaceMatching, method_index: int, rank_index: int, bins: np.ndarray
) -> None:
    """Histogram of listed-pair scores over both baselines; dashed lines at each baseline's 95th percentile."""
    method, rank = result.methods[method_index], result.ranks[rank_index]
    series = (
        ("Gaussian subspaces", result.gaussian_baseline[method_index, rank_index], "tab:grey"),
        ("random heads", result.head_baseline[method_index, rank_index], "tab:orange"),
    )
    for label, values, colour in series:
        ax.hist(values, bins=bins, density=True, alpha=0.45, color=colour, label=f"{label} (n={values.size})")
        ax.axvline(np.percentile(values, 95), color=colour, linestyle="--", linewidth=1.2)
    ax.hist(listed, bins=bins, density=True, alpha=0.6, color="tab:blue", label=f"listed pairs (n={listed.size})")
    ax.set_xlabel(f"{method} score, rank {rank} (dashed: baseline 95th pct)", fontsize=8)
    ax.set_ylabel("density")


def plot_matching_overview(results: list[SubspaceMatching]) -> dict[str, plt.Figure]:
    """Listed-pair median (band: 25th-75th percentile) against rank, with both baselines' mean and 95th percentile.

    One column per comparison (IH x IH, SH x SH, IH x SH), one row per method.
    """
    methods = results[0].methods
    fig, axes = plt.subplots(
        len(methods), len(results), figsize=(4.3 * len(results), 3.4 * len(methods)), squeeze=False, sharey=True
    )
    for col, result in enumerate(results):
        pairs = result.pair_scores()
        x = np.arange(len(result.ranks))
        for row, method in enumerate(methods):
            ax, m = axes[row, col], result.methods.index(method)
            for label, values, colour in (
                ("Gaussian subspaces", result.gaussian_baseline[m], "tab:grey"),
                ("random heads", result.head_baseline[m], "tab:orange"),
            ):
                ax.plot(x, values.mean(-1), color=colour, linewidth=1.2, label=f"{label}: mean")
                ax.plot(x, np.percentile(values, 95, axis=-1), color=colour, linestyle="--", label=f"{label}: 95th pct")
            if pairs.shape[-1]:
                low, median, high = np.percentile(pairs[m], [25, 50, 75], axis=-1)
                ax.fill_between(x, low, high, color="tab:blue", alpha=0.25, label="listed pairs: 25th-75th pct")
                ax.plot(x, median, "-o", color="tab:blue", label=f"listed pairs: median (n={pairs.shape[-1]})")
            ax.set_xticks(x, [str(r) for r in result.ranks])
            ax.set_ylim(0.0, 1.02)
            ax.set_xlabel("rank r (top singular directions compared)")
            ax.set_ylabel(f"'{method}' score")
            ax.set_title(f"{result.mode}, '{method}'", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Subspace matching of the listed heads against random heads and random Gaussian subspaces")
    fig.tight_layout(rect=(0.0, 0.1, 1.0, 1.0))
    return {"matching_overview": fig}


def plot_energy_profiles(spectra: HeadSpectra) -> dict[str, plt.Figure]:
    """Cumulative share of squared singular values: one line per listed head over the band of all heads."""
    panels = {side: (spectra.listed[side], spectra.everyone[side], spectra.heads[side]) for side in spectra.listed}
    ranks = spectra.ranks
    titles = {"key": "W_qk of the listed IHs (key side)", "output": "W_ov of the listed shifting heads (output side)"}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False, sharey=True)
    for ax, (side, (listed, everyone, heads)) in zip(axes[0], panels.items(), strict=True):
        r = np.arange(1, listed.shape[-1] + 1)
        low, median, high = np.percentile(everyone, [5, 50, 95], axis=0)
        ax.fill_between(r, low, high, color="tab:grey", alpha=0.3, label="all heads: 5th-95th pct")
        ax.plot(r, median, color="tab:grey", linestyle="--", label="all heads: median")
        for profile, (layer, head) in zip(listed, heads, strict=True):
            ax.plot(r, profile, linewidth=1.0, alpha=0.85, label=head_label(layer, head))
        for rank in ranks:
            ax.axvline(rank, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlabel("number of top singular directions r (dotted: ranks compared)")
        ax.set_ylabel("share of squared singular values")
        ax.set_ylim(0.0, 1.02)
        ax.set_title(titles[side], fontsize=10)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("How much of each head's matrix its top r singular directions hold")
    fig.tight_layout()
    return {"energy_profiles": fig}
