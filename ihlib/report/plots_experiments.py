"""Figures of the intervention experiments (claims 3 and 4): curves with 95% bands across repetitions.

Every figure is at most `PAGE_WIDTH_IN` wide with text of at least 9 pt, so that it stays legible when the page
shows it at full width: the error and probability panels are stacked (error above), with one legend below them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ihlib.claims.projection import ProjectionResult
from ihlib.claims.shuffling import ShuffleControls, ShuffleResult, ShuffleSweep
from ihlib.report.figure_style import FONT_PT, PAGE_WIDTH_IN, fit_lines
from ihlib.report.tables import repetition_table

COLORS = {
    "original": "black",
    "shuffle": "tab:blue",
    "random baseline": "tab:red",
    "common subspace": "tab:blue",
    "random subspace": "tab:gray",
    "energy-matched": "tab:orange",
    "cross-layer shuffle": "tab:cyan",
    "other heads of these layers, shuffled": "tab:green",
    "random heads of these layers": "tab:pink",
    "random heads": "tab:red",
}
METRICS = (("err", "Top-1 error"), ("prob", "P(correct next token)"))
PANEL_HEIGHT_IN = 2.8


def _two_panels(*, sharex: bool) -> tuple[plt.Figure, np.ndarray]:
    """A page-wide figure with two panels stacked, room left below them for the legend."""
    size = (PAGE_WIDTH_IN, 2 * PANEL_HEIGHT_IN + 1.6)
    return plt.subplots(2, 1, figsize=size, sharex=sharex, layout="constrained")


def _finish(fig: plt.Figure, axs: np.ndarray, title: str) -> plt.Figure:
    """Gather the panels' legend entries (each label once) below them and set the bold title, broken to fit."""
    entries = {}
    for ax in axs:
        entries |= {label: handle for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    ncol = min(3, len(entries))
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncol=ncol, frameon=False)
    fig.suptitle(fit_lines(title, bold=True), fontsize=FONT_PT + 1, weight="bold")
    return fig


def _band(ax: plt.Axes, x: np.ndarray, stats: dict, label: str, style: str = "-o") -> None:
    """Draw `stats["mean"]` against `x` with its 95% band `stats["low"]..stats["high"]`."""
    color = COLORS.get(label)
    ax.plot(x, stats["mean"], style, color=color, label=label, markersize=3)
    ax.fill_between(x, stats["low"], stats["high"], color=color, alpha=0.2, linewidth=0)


def plot_by_position(positions: np.ndarray, by_position: dict, chance: float, title: str) -> plt.Figure:
    """Plot error (top) and probability (bottom) by query position, one curve and 95% band per condition.

    `by_position[condition][metric]` holds `mean`, `low`, `high` arrays `(n_positions,)`; `chance` is 1/vocab.
    """
    fig, axs = _two_panels(sharex=True)
    for ax, (metric, ylabel) in zip(axs, METRICS, strict=True):
        for condition, stats in by_position.items():
            _band(ax, positions, stats[metric], condition)
        level = 1 - chance if metric == "err" else chance
        ax.axhline(level, color="gray", linestyle=":", label="chance")
        ax.set_ylabel(ylabel, weight="bold")
        ax.set_ylim(-0.02, 1.02)
    axs[1].set_xlabel("Query position t (predicting token t+1)", weight="bold")
    return _finish(fig, axs, title)


def plot_over_k(Ks: list[int], summary: dict, n_counting: list, title: str) -> plt.Figure:
    """Plot mean error (top) and probability (bottom) against K with 95% intervals, one series per condition.

    `summary[condition][metric]` holds `mean`, `low`, `high` arrays `(n_K,)`; tick labels show how many of
    the K heads count as heads of their kind (`n_counting` entries are None when not given).
    """
    fig, axs = _two_panels(sharex=True)
    x = np.asarray(Ks, dtype=float)
    offsets = np.linspace(-0.15, 0.15, len(summary))
    ticks = [f"{K}" if n is None else f"{K}\n({n})" for K, n in zip(Ks, n_counting, strict=True)]
    for ax, (metric, ylabel) in zip(axs, METRICS, strict=True):
        for offset, (condition, stats) in zip(offsets, summary.items(), strict=True):
            s = stats[metric]
            err = np.abs(np.stack([s["mean"] - s["low"], s["high"] - s["mean"]]))
            ax.errorbar(x + offset, s["mean"], yerr=err, fmt="-o", capsize=3, color=COLORS.get(condition))
            ax.plot([], [], "-o", color=COLORS.get(condition), label=condition)
        ax.set_ylabel(f"{ylabel},\nmean over samples", weight="bold")
        ax.set_ylim(-0.02, 1.02)
    axs[1].set_xticks(x, ticks)
    axs[1].set_xlabel("K heads edited (of which count as heads of their kind)", weight="bold")
    return _finish(fig, axs, title)


def plot_rank_sweep(ranks: list[int], summary: dict, title: str) -> plt.Figure:
    """Plot mean error (top) and probability (bottom) against the projected rank, common vs random subspace, with
    95% bands.

    `summary[condition][metric]` holds `mean`, `low`, `high` arrays `(n_ranks,)`; rank 0 is the unedited
    model, drawn as a dashed line.
    """
    fig, axs = _two_panels(sharex=True)
    x = np.asarray(ranks)
    for ax, (metric, ylabel) in zip(axs, METRICS, strict=True):
        for condition, stats in summary.items():
            _band(ax, x[1:], {k: v[1:] for k, v in stats[metric].items()}, condition)
        unedited = next(iter(summary.values()))[metric]
        ax.axhline(unedited["mean"][0], color="black", linestyle="--", label="unedited")
        ax.axhspan(unedited["low"][0], unedited["high"][0], color="black", alpha=0.08)
        ax.set_ylabel(f"{ylabel},\nmean over samples", weight="bold")
        ax.set_ylim(-0.02, 1.02)
    axs[1].set_xlabel("Rank of the projected subspace", weight="bold")
    return _finish(fig, axs, title)


def plot_repetitions(sweep: ShuffleSweep, real: list, *, title: str, seed: int = 0) -> dict[str, plt.Figure]:
    """Plot each repetition's error: against K (top) and against the number of intact counting heads (bottom).

    `real`: the heads that count as heads of the sweep's kind (`heads.counting_heads`). Points are jittered
    sideways (seeded) so that equal values stay visible; lines join the means.
    """
    table, n_real, kind, component = repetition_table(sweep, real), len(real), sweep.kind, sweep.component
    rng = np.random.default_rng(seed)
    fig, axs = _two_panels(sharex=False)
    conditions = list(dict.fromkeys(table["condition"]))
    offsets = dict(zip(conditions, np.linspace(-0.2, 0.2, len(conditions)), strict=True))
    unedited = table.loc[table["condition"] == "original", "err"].mean()
    for condition, rows in table.groupby("condition", sort=False):
        color = COLORS.get(condition)
        for ax, column in zip(axs, ("K", "intact real heads"), strict=True):
            x = rows[column].to_numpy(float) + offsets[condition]
            jitter = rng.uniform(-0.06, 0.06, len(rows))
            ax.scatter(x + jitter, rows["err"], s=10, alpha=0.5, color=color, label=condition)
            means = rows.groupby(column)["err"].mean()
            ax.plot(means.index + offsets[condition], means.to_numpy(), "-", color=color, linewidth=1)
    axs[0].axvline(n_real + 0.5, color="tab:green", linestyle="--", label=f"{n_real} {kind} heads end here")
    axs[0].set_xlabel("K heads edited (top K of the ranking)", weight="bold")
    axs[1].set_xlabel(f"{kind.capitalize()} heads whose {component} still comes from one of them", weight="bold")
    axs[1].set_xticks(range(n_real + 1))
    for ax in axs:
        ax.axhline(unedited, color="black", linestyle=":", label="unedited (mean)")
        ax.set_ylabel("Top-1 error of\none repetition", weight="bold")
        ax.set_ylim(-0.02, 1.02)
    return {f"repetitions_{component}": _finish(fig, axs, title)}


def plot_stack_energy(S: np.ndarray, ranks: list[int], *, title: str) -> dict[str, plt.Figure]:
    """Plot the share of squared singular values `S` (descending) held by the top r directions, against r.

    The dashed line is an even spread over all `len(S)` directions; dotted vertical lines mark `ranks`.
    """
    S = np.asarray(S, dtype=float)
    r = np.arange(1, len(S) + 1)
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 4.5), layout="constrained")
    ax.plot(r, np.cumsum(S**2) / np.sum(S**2), "-", color="tab:blue", label="stacked W_QK of the induction heads")
    ax.plot(r, r / len(S), "--", color="gray", label="energy spread evenly (no preferred directions)")
    for rank in ranks:
        ax.axvline(rank, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("Rank r (top r right singular directions)", weight="bold")
    ax.set_ylabel("Share of squared singular values", weight="bold")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title(fit_lines(title, bold=True), fontsize=FONT_PT + 1, weight="bold")
    return {"stack_energy": fig}


def plot_shuffle(result: ShuffleResult) -> dict[str, plt.Figure]:
    """Error and probability by query position for one shuffle experiment, one curve and 95% band per condition."""
    title = (
        f"Shuffling {result.component} of K={len(result.heads)} heads\n"
        f"mean and 95% band over {result.settings.n_exp} repetitions"
    )
    chance = 1 / result.settings.vocab_size
    return {result.name: plot_by_position(result.settings.positions(), result.by_position, chance, title)}


def plot_shuffle_sweep(sweep: ShuffleSweep, *, counting: list | None = None) -> dict[str, plt.Figure]:
    """Error and probability against K for a sweep; `counting` (heads that count) annotates each K with their number."""
    n_counting = [None if counting is None else sum(h in counting for h in sweep.heads[:K]) for K in sweep.Ks]
    title = (
        f"Shuffling {sweep.component} of the top K {sweep.kind} heads\n"
        f"mean and 95% interval over {sweep.settings.n_exp} repetitions"
    )
    return {sweep.name: plot_over_k(sweep.Ks, sweep.summary, n_counting, title)}


def plot_projection(result: ProjectionResult) -> dict[str, plt.Figure]:
    """Error and probability against the projected rank, common vs random subspace (no figure when untested)."""
    if result.untested:
        return {}
    action = "Projecting out" if result.project_out else "Keeping only"
    where = "W_K" if result.component == "QK" else "W_O"
    title = (
        f"{action} the common subspace of IHs' W_QK (fitted: {result.fitting}) in "
        f"{where} of {len(result.heads)} heads,\nvs a random subspace and an energy-matched one per head; "
        f"mean and 95% band over {result.settings.n_exp} repetitions"
    )
    return {result.name: plot_rank_sweep(result.ranks, result.summary, title)}


def plot_shuffle_controls(result: ShuffleControls) -> dict[str, plt.Figure]:
    """Error change from the unedited model per condition of `shuffle_controls`, mean and 95% interval, as bars."""
    summary = result.summary
    conditions = [c for c in summary if c != "original"]
    means = np.array([float(summary[c]["err_change"]["mean"]) for c in conditions])
    lows = np.array([float(summary[c]["err_change"]["low"]) for c in conditions])
    highs = np.array([float(summary[c]["err_change"]["high"]) for c in conditions])
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 0.5 * len(conditions) + 1.8), layout="constrained")
    y = np.arange(len(conditions))
    errors = np.abs(np.stack([means - lows, highs - means]))
    ax.barh(y, means, xerr=np.nan_to_num(errors), color=[COLORS.get(c, "gray") for c in conditions], capsize=3)
    ax.set_yticks(y, conditions)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("change in top-1 copying error (mean, 95% interval)", weight="bold")
    layers = ", ".join(map(str, result.layers))
    absent = f"\nabsent: {', '.join(result.absent)}" if result.absent else ""
    title = f"{result.component} of {len(result.heads)} {result.kind} heads (layer(s) {layers}){absent}"
    fig.suptitle(fit_lines(title), fontsize=FONT_PT + 1)
    return {result.name: fig}
