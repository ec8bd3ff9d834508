"""Figures for chapter 0: head scores against their uniform-attention baseline, rankings, attention examples.

Every figure is at most `PAGE_WIDTH_IN` wide with tick labels of at least `FONT_PT - 1` points, so that they stay
legible when the page shows the figure at full width; panels are stacked rather than set side by side.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import Normalize

from ihlib.heads.scoring import AttentionExample, HeadScores, PositionScores, induction_mask, uniform_scores_by_position
from ihlib.model.head_ids import HEAD_KINDS, check_k, head_label, head_labels
from ihlib.report.figure_style import FONT_PT, PAGE_WIDTH_IN


def plot_scores_by_position(
    by_position: PositionScores, IH_list: list, Shifting_list: list, *, title: str = ""
) -> dict[str, plt.Figure]:
    """Induction score of the listed IHs and shifting score of the listed shifting heads by query position.

    Dotted vertical lines mark the starts of the repeats, the dashed black curve is the uniform-attention head.
    """
    setting = by_position.setting
    uniform = uniform_scores_by_position(setting.seg_len, setting.rep, setting.bos)
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 6.4), sharex=True)
    for ax, kind, heads in ((axes[0], "induction", IH_list), (axes[1], "shifting", Shifting_list)):
        values = getattr(by_position, kind)
        t = values.shape[-1]
        for layer, head in heads:
            ax.plot(np.arange(t), values[layer, head], label=head_label(layer, head), lw=1.3)
        ax.plot(np.arange(t), uniform[kind], "k--", lw=1, label="uniform attention")
        for start in range(setting.seg_len, t, setting.seg_len):
            ax.axvline(start, color="grey", ls=":", lw=0.8)
        ax.set_title(f"{kind} score by query position")
        ax.set_ylabel(f"{kind} score")
        ax.set_ylim(0, 1.05)
        ax.legend(ncol=3, loc="best")
    axes[1].set_xlabel("query position")
    if title:
        fig.suptitle(title, fontsize=FONT_PT + 1)
    return {"scores_by_position": _legible(fig)}


def plot_head_scores(scores: HeadScores, *, title: str = "") -> dict[str, plt.Figure]:
    """Heatmaps (layer x head) of induction and shifting scores from 0; the uniform head dashed on the colour bar."""
    baseline = scores.uniform
    n_layer, n_head = scores.induction.shape
    annotate = n_head <= 12 and n_layer <= 16
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 2 * (0.9 + 0.4 * n_layer) + 0.6))
    for ax, kind in zip(axes, HEAD_KINDS, strict=True):
        values = getattr(scores, kind)
        sns.heatmap(
            values,
            ax=ax,
            cmap="Reds",
            norm=Normalize(vmin=0.0, vmax=max(1.0, float(values.max()))),
            annot=annotate,
            fmt=".2f",
            annot_kws={"fontsize": FONT_PT - 1 if n_head <= 8 else FONT_PT - 2},
            cbar_kws={"label": f"score\n(dashed: uniform\nhead, {baseline[kind]:.3f})"},
        )
        ax.collections[0].colorbar.ax.axhline(baseline[kind], color="black", linestyle="--", linewidth=1.5)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{kind.capitalize()} score per head")
    fig.suptitle(title or "Head scores on repeated random tokens", fontsize=FONT_PT + 1)
    return {"head_scores": _legible(fig)}


def plot_top_heads(scores: HeadScores, *, top: int = 10) -> dict[str, plt.Figure]:
    """Bars of the `top` heads of each ranking with the uniform-attention baseline as a dashed line."""
    baseline = scores.uniform
    top = check_k(top, scores.induction.size, "top")
    fig, axes = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 6.4))
    rankings = {"induction": scores.IH_list[:top], "shifting": scores.Shifting_list[:top]}
    colours = {"induction": "tab:blue", "shifting": "tab:orange"}
    for ax, kind in zip(axes, HEAD_KINDS, strict=True):
        heads = rankings[kind]
        values = [getattr(scores, kind)[l, h] for l, h in heads]
        ax.bar(range(top), values, color=colours[kind], label=f"{kind} score")
        ax.axhline(baseline[kind], color="black", linestyle="--", label="uniform-attention head")
        ax.set_xticks(range(top), head_labels(heads), rotation=45 if top > 12 else 0)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("head, ranked")
        ax.set_ylabel(f"{kind} score")
        ax.set_title(f"Top {top} {kind} heads")
        ax.legend(loc="upper right")
    return {"top_heads": _legible(fig)}


def plot_attention_examples(example: AttentionExample) -> dict[str, plt.Figure]:
    """Attention pattern `(query, key)` of each named head on one repeated random sequence.

    Hollow circles mark where an ideal induction head (green) and an ideal previous-token head (orange) would look;
    grey lines separate the repeated segments.
    """
    seg_len, rep, attn = example.seg_len, example.rep, example.attention
    t = attn.shape[-1]
    ind_q, ind_k = np.nonzero(induction_mask(seg_len, rep).numpy())
    prev_q = np.arange(1, t)
    n = len(example.heads)
    fig, axes = plt.subplots(1, n, figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN / n + 0.6), squeeze=False)
    for ax, caption, (layer, head), pattern in zip(axes[0], example.captions, example.heads, attn, strict=True):
        image = ax.imshow(pattern, cmap="Greys", vmin=0, vmax=1)
        ax.scatter(ind_k, ind_q, s=14, facecolors="none", edgecolors="tab:green", label="ideal induction target")
        ax.scatter(prev_q - 1, prev_q, s=14, facecolors="none", edgecolors="tab:orange", label="previous token")
        for boundary in range(seg_len, t, seg_len):
            ax.axhline(boundary - 0.5, color="grey", linewidth=0.6)
            ax.axvline(boundary - 0.5, color="grey", linewidth=0.6)
        ax.set_xlabel("key position (attended to)")
        ax.set_ylabel("query position")
        ax.set_title(f"{head_label(layer, head)}: {caption}")
        fig.colorbar(image, ax=ax, fraction=0.046, label="attention weight")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False)
    fig.suptitle(
        f"Attention on one sequence: {seg_len} random tokens repeated {rep} times ({example.model})",
        fontsize=FONT_PT + 1,
    )
    return {"attention_examples": _legible(fig, bottom_in=0.45)}


def _legible(fig: plt.Figure, *, bottom_in: float = 0.0) -> plt.Figure:
    """Set ticks and axis labels to `FONT_PT`, titles and legends to at least `FONT_PT - 1`; lay out, keeping
    `bottom_in` inches free below the axes for a figure legend."""
    for ax in fig.axes:
        ax.tick_params(labelsize=FONT_PT)
        ax.xaxis.label.set_fontsize(FONT_PT)
        ax.yaxis.label.set_fontsize(FONT_PT)
        ax.title.set_fontsize(FONT_PT)
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(FONT_PT - 1)
    for legend in fig.legends:
        for text in legend.get_texts():
            text.set_fontsize(FONT_PT - 1)
    fig.tight_layout(rect=(0, bottom_in / fig.get_figheight(), 1, 1))
    return fig
