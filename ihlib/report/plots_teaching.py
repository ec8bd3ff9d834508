"""Figures for the standard tools: OV copying, ablation, loss by position, training dynamics.

Every figure is at most `PAGE_WIDTH_IN` wide and uses text of at least 9 pt, so that its tick labels stay
legible when the page shows it at full width. Plot functions take results and return the figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm

from ihlib.model.head_ids import HEAD_KINDS
from ihlib.report.figure_style import FONT_PT, LAYER_COLOURS, MAX_ANNOTATED_CELLS, PAGE_WIDTH_IN
from ihlib.tools.ablation import AblationCopying
from ihlib.tools.dynamics import TrainingDynamics
from ihlib.tools.losses import PositionLoss
from ihlib.tools.ov_copying import OVCopyingScores


def plot_ov_copying(scores: OVCopyingScores, *, title: str = "") -> plt.Figure:
    """Heatmaps (layer x head) of the token fraction (chance `1/vocab` marked) and the eigenvalue score (0 marked)."""
    panel_height = 0.9 + 0.35 * scores.token_fraction.shape[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 2 * panel_height + 0.5))
    _heatmap(fig, top, scores.token_fraction, Normalize(0, 1), "Greens", "share\n(dashed: chance)")
    evaluated = (
        "source tokens"
        if scores.sources.size == scores.vocab_size
        else f"{scores.sources.size:,} sampled source tokens (of {scores.vocab_size:,})"
    )
    top.set_title(f"share of {evaluated} whose own token wins (argmax over outputs)")
    _mark_on_colourbar(top, scores.chance_fraction)
    _heatmap(fig, bottom, scores.eigen_score, TwoSlopeNorm(0, -1, 1), "RdBu_r", "Σλ / Σ|λ|\n(dashed: random)")
    bottom.set_title("eigenvalue copying score")
    _mark_on_colourbar(bottom, 0.0)
    return _finish(fig, title or "OV circuit W_U W_OV W_Eᵀ of every head (LayerNorm ignored)")


def plot_ov_copying_vs_induction(
    scores: OVCopyingScores, induction: np.ndarray, *, uniform_induction: float | None = None, title: str = ""
) -> plt.Figure:
    """Eigenvalue copying score against induction score, one dot per head coloured by layer; baselines dashed."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.7, 3.6))
    n_layer = induction.shape[0]
    for layer in range(n_layer):
        colour = LAYER_COLOURS(layer % 10)
        ax.scatter(induction[layer], scores.eigen_score[layer], color=colour, label=f"layer {layer}", s=30)
    ax.axhline(0.0, color="grey", ls="--", lw=1, label="eigen score of a random circuit")
    if uniform_induction is not None:
        ax.axvline(uniform_induction, color="black", ls=":", lw=1, label="uniform-attention head")
    ax.set_xlabel("induction score (attention)")
    ax.set_ylabel("eigenvalue copying score")
    ax.set_ylim(-1.05, 1.05)
    return _finish(fig, title or "Do the heads that attend like IHs also copy?", legend_from=[ax])


def plot_ov_circuit_block(block: np.ndarray, tokens: list[int], *, title: str = "") -> plt.Figure:
    """One head's OV circuit on `tokens`: rows output token, columns source token; symmetric diverging colours."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.6, PAGE_WIDTH_IN * 0.5))
    limit = float(np.abs(block).max()) or 1.0
    _heatmap(fig, ax, block, TwoSlopeNorm(0, -limit, limit), "RdBu_r", "logit added")
    ticks = np.arange(len(tokens))
    step = max(1, len(tokens) // 10)
    ax.set_xticks(ticks[::step], [str(t) for t in tokens[::step]])
    ax.set_yticks(ticks[::step], [str(t) for t in tokens[::step]])
    ax.set_xlabel("source token (attended to)")
    ax.set_ylabel("output token (logit)")
    return _finish(fig, title or "Full OV circuit: a red diagonal copies")


def plot_ablation_copying(result: AblationCopying, *, title: str = "") -> plt.Figure:
    """Top-1 error and P(correct) per condition with bootstrap intervals; the intact model and chance marked."""
    n = len(result.conditions)
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 1.2 + 0.28 * n), sharey=True)
    rows = np.arange(n)
    for ax, mean, low, high, label in (
        (left, result.error, result.error_low, result.error_high, "top-1 error"),
        (right, result.prob, result.prob_low, result.prob_high, "P(correct token)"),
    ):
        ax.barh(rows, mean, xerr=[mean - low, high - mean], color="tab:blue", alpha=0.8, capsize=2)
        intact = [i for i, condition in enumerate(result.conditions) if not condition.heads]
        if intact:
            ax.axvline(mean[intact[0]], color="black", ls="--", lw=1, label="intact model")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel(label)
    left.axvline(result.chance_error, color="tab:red", ls=":", lw=1.2, label="chance")
    left.set_yticks(rows, result.names)
    left.invert_yaxis()
    return _finish(fig, title or "Copying on repeated random segments under ablation", legend_from=[left])


def plot_position_loss(result: PositionLoss, *, title: str = "") -> plt.Figure:
    """Mean loss at each query position with its bootstrap band; repeat starts dotted, `ln(vocab)` dashed."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 3.2))
    t = np.arange(result.loss.size)
    ax.fill_between(t, result.low, result.high, color="tab:blue", alpha=0.3, lw=0)
    ax.plot(t, result.loss, color="tab:blue", lw=1.5, label=f"mean over sequences ({result.level:.0%} band)")
    ax.axhline(result.uniform_loss, color="black", ls="--", lw=1, label="uniform guess: ln(vocab)")
    for r in range(1, result.rep):
        ax.axvline(result.offset + r * result.seg_len, color="grey", ls=":", lw=1)
    ax.set_xlabel("query position (predicts the next token; dotted: first token of a repeat)")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="center right")
    return _finish(fig, title or "Loss by position on a random segment repeated")


def plot_training_dynamics(
    dynamics: TrainingDynamics, *, baselines: dict[str, float] | None = None, title: str = ""
) -> plt.Figure:
    """Best induction and shifting score per layer against step, loss on a twin axis; baselines dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4), sharex=True)
    n_layer = dynamics.induction.shape[1]
    for ax, kind in zip(axes, HEAD_KINDS, strict=True):
        best = dynamics.best_per_layer(kind)
        for layer in range(n_layer):
            colour = LAYER_COLOURS(layer % 10)
            ax.plot(dynamics.step, best[:, layer], color=colour, marker=".", label=f"layer {layer}")
        if baselines and kind in baselines:
            ax.axhline(baselines[kind], color="black", ls="--", lw=1, label="uniform attention")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"best {kind} score in layer")
        twin = ax.twinx()
        twin.plot(dynamics.step, dynamics.loss, color="grey", lw=1.2, ls="-.", label="loss")
        twin.set_ylabel("loss (nats)", color="dimgrey")
        twin.set_ylim(bottom=0)
    return _finish(fig, title or "Scores and loss during training: the phase change", legend_from=[axes[0], twin])


def _heatmap(fig: plt.Figure, ax: plt.Axes, values: np.ndarray, norm, cmap: str, label: str) -> None:
    """Draw `values` `(rows, columns)` with a colour bar labelled `label`; numbers in the cells when few."""
    image = ax.imshow(values, norm=norm, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, label=label, fraction=0.08)
    n_rows, n_cols = values.shape
    ax.set_xticks(range(n_cols))
    ax.set_yticks(range(n_rows))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if values.size <= MAX_ANNOTATED_CELLS:
        for (row, col), value in np.ndenumerate(values):
            red, green, blue, _ = image.cmap(image.norm(value))
            colour = "white" if 0.3 * red + 0.6 * green + 0.1 * blue < 0.5 else "black"
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=9, color=colour)


def _mark_on_colourbar(ax: plt.Axes, value: float) -> None:
    """Draw a dashed line at the baseline `value` on the colour bar of `ax`'s image."""
    ax.images[0].colorbar.ax.axhline(value, color="black", ls="--", lw=1.5)


def _finish(fig: plt.Figure, title: str, *, legend_from: list[plt.Axes] | None = None) -> plt.Figure:
    """Set the suptitle and all text to at least `FONT_PT - 1`; gather the legends of `legend_from` below the axes."""
    for ax in fig.axes:
        ax.tick_params(labelsize=FONT_PT)
        ax.xaxis.label.set_fontsize(FONT_PT)
        ax.yaxis.label.set_fontsize(FONT_PT)
        ax.title.set_fontsize(FONT_PT + 1)
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(FONT_PT - 1)
    fig.suptitle(title, fontsize=FONT_PT + 2)
    if not legend_from:
        fig.tight_layout()
        return fig
    handles, labels = [], []
    for ax in legend_from:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ncol = min(4, len(labels))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=FONT_PT - 1, frameon=False)
    rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, (0.05 + 0.22 * rows) / fig.get_figheight(), 1, 1))  # legend rows ~0.22 in
    return fig
