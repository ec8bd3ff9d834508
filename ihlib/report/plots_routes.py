"""Figure of the route analysis: per induction head (and for copying), the share each route carries, with intervals.

At most `PAGE_WIDTH_IN` wide with text of at least `FONT_PT - 1` points; one row per IH, so lists of 20 heads fit.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ihlib.model.head_ids import head_label
from ihlib.report.figure_style import FONT_PT, PAGE_WIDTH_IN, fit_lines
from ihlib.tools.route_shares import CONDITIONS, PARTS, RouteAnalysis

PART_COLOURS = ("tab:blue", "tab:orange", "lightgray")
CONDITION_COLOURS = ("tab:blue", "tab:orange", "tab:purple")
CONDITION_LABELS = ("direct write removed", "MLPs' shifting-head part removed", "both removed")
ROW_IN = 0.32  # height per bar row, inches


def _rows(analysis: RouteAnalysis) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Row labels (IHs, then "copying") and the shares and drops `(n_rows, 3, 3)` (mean, low, high last)."""
    labels = [head_label(*pair) for pair in analysis.IH_list] + ["copying"]
    shares = np.concatenate([analysis.induction_shares, analysis.copying_shares[None]])
    drops = np.concatenate([analysis.induction_drops, analysis.copying_drops[None]])
    return labels, shares, drops


def _whiskers(values: np.ndarray) -> np.ndarray:
    """`(2, n)` distances from the means `values[:, 0]` to the interval ends (NaN-safe, never negative)."""
    return np.nan_to_num(np.abs(np.stack([values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]])))


def _stacked_shares(ax: plt.Axes, labels: list[str], shares: np.ndarray) -> None:
    """One horizontal bar per row, stacked by route (`PARTS`), a 95% whisker at the right end of each route."""
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    for part, (name, colour) in enumerate(zip(PARTS, PART_COLOURS, strict=True)):
        width = np.nan_to_num(shares[:, part, 0])
        ax.barh(y, width, left=left, color=colour, label=name, height=0.7)
        if part < len(PARTS) - 1:
            ax.errorbar(left + width, y, xerr=_whiskers(shares[:, part]), fmt="none", ecolor="black", capsize=2, lw=1)
        left = left + width
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("share of induction above the uniform head's (IHs) or of copying (last row)", weight="bold")
    _legend_above(ax, "Shares: the two routes split symmetrically (Shapley); the rest is what neither carries")


def _condition_drops(ax: plt.Axes, labels: list[str], drops: np.ndarray) -> None:
    """Grouped horizontal bars: the share lost when each condition (`CONDITIONS`) is removed alone, 95% whiskers."""
    y = np.arange(len(labels))
    height = 0.8 / len(CONDITIONS)
    for k, (label, colour) in enumerate(zip(CONDITION_LABELS, CONDITION_COLOURS, strict=True)):
        rows = y - 0.4 + (k + 0.5) * height
        ax.barh(rows, drops[:, k, 0], height=height, color=colour, label=label)
        ax.errorbar(drops[:, k, 0], rows, xerr=_whiskers(drops[:, k]), fmt="none", ecolor="black", capsize=2, lw=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", lw=0.8)
    ax.axvline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("share lost when the route is removed from the IHs' keys", weight="bold")
    _legend_above(ax, "What each removal costs on its own")


def _legend_above(ax: plt.Axes, title: str) -> None:
    """The panel's legend above it, titled with what the panel shows."""
    legend = ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, title=title)
    legend.get_title().set_fontsize(FONT_PT)


def plot_route_shares(analysis: RouteAnalysis, *, title: str = "") -> dict[str, plt.Figure]:
    """Two stacked panels, one row per IH plus copying: the route shares (stacked) and each removal's own cost."""
    labels, shares, drops = _rows(analysis)
    height = 2 * (0.9 + ROW_IN * len(labels)) + 1.6
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, height), layout="constrained")
    _stacked_shares(axes[0], labels, shares)
    _condition_drops(axes[1], labels, drops)
    for ax in axes:
        ax.set_ylabel("induction head", weight="bold")
        ax.set_xlim(min(-0.05, float(np.nanmin(drops[..., 1])) - 0.02), 1.05)
    text = title or f"Which route carries the previous token into the induction heads' keys ({analysis.model})"
    fig.suptitle(fit_lines(text, bold=True), fontsize=FONT_PT + 1, weight="bold")
    return {"route_shares": fig}
