"""Figures for chapter 0: head scores against their uniform-attention baseline, rankings, attention examples."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import TwoSlopeNorm

from ihlib.heads import HEAD_KINDS, check_k, head_label, head_labels
from ihlib.scoring import AttentionExample, HeadScores, PositionScores, induction_mask, uniform_scores_by_position


def plot_scores_by_position(
    by_position: PositionScores, IH_list: list, Shifting_list: list, *, title: str = ""
) -> dict[str, plt.Figure]:
    """Induction score of the listed IHs and shifting score of the listed shifting heads by query position.

    Dotted vertical lines mark the starts of the repeats, the dashed black curve is the uniform-attention head.
    """
    setting = by_position.setting
    uniform = uniform_scores_by_position(setting.seg_len, setting.rep, setting.bos)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, kind, heads in ((axes[0], "induction", IH_list), (axes[1], "shifting", Shifting_list)):
        values = getattr(by_position, kind)
        t = values.shape[-1]
        for layer, head in heads:
            ax.plot(np.arange(t), values[layer, head], label=head_label(layer, head), lw=1.3)
        ax.plot(np.arange(t), uniform[kind], "k--", lw=1, label="uniform attention")
        for start in range(setting.seg_len, t, setting.seg_len):
            ax.axvline(start, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("query position")
        ax.set_title(f"{kind} score by query position")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("score (attention weight)")
    axes[0].set_ylim(0, 1.05)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return {"scores_by_position": fig}


def plot_head_scores(scores: HeadScores, *, title: str = "") -> dict[str, plt.Figure]:
    """Heatmaps (layer x head) of induction and shifting scores, coloured around the uniform baseline (white)."""
    baseline = scores.uniform
    n_layer, n_head = scores.induction.shape
    annotate = n_head <= 16 and n_layer <= 16
    fig, axes = plt.subplots(1, 2, figsize=(min(6 + 0.9 * n_head, 18), 1.2 + 0.45 * n_layer + 1.5))
    for ax, kind in zip(axes, HEAD_KINDS, strict=True):
        values = getattr(scores, kind)
        norm = TwoSlopeNorm(vmin=0.0, vcenter=baseline[kind], vmax=max(1.0, float(values.max())))
        sns.heatmap(
            values,
            ax=ax,
            cmap="RdBu_r",
            norm=norm,
            annot=annotate,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            cbar_kws={"label": f"{kind} score (white = uniform head, {baseline[kind]:.3f})"},
        )
        ax.collections[0].colorbar.ax.axhline(baseline[kind], color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"{kind.capitalize()} score per head")
    fig.suptitle(title or "Head scores on repeated random tokens")
    fig.tight_layout()
    return {"head_scores": fig}


def plot_top_heads(scores: HeadScores, *, top: int = 10) -> dict[str, plt.Figure]:
    """Bars of the `top` heads of each ranking with the uniform-attention baseline as a dashed line."""
    baseline = scores.uniform
    top = check_k(top, scores.induction.size, "top")
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.9 * top + 4), 3.8))
    rankings = {"induction": scores.IH_list[:top], "shifting": scores.Shifting_list[:top]}
    colours = {"induction": "tab:blue", "shifting": "tab:orange"}
    for ax, kind in zip(axes, HEAD_KINDS, strict=True):
        heads = rankings[kind]
        values = [getattr(scores, kind)[l, h] for l, h in heads]
        ax.bar(range(top), values, color=colours[kind], label=f"{kind} score")
        ax.axhline(baseline[kind], color="black", linestyle="--", label="uniform-attention head")
        ax.set_xticks(range(top), head_labels(heads), rotation=60, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("head, ranked")
        ax.set_ylabel(f"{kind} score")
        ax.set_title(f"Top {top} {kind} heads")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {"top_heads": fig}


def plot_attention_examples(example: AttentionExample) -> dict[str, plt.Figure]:
    """Attention pattern `(query, key)` of each named head on one repeated random sequence.

    Hollow circles mark where an ideal induction head (green) and an ideal previous-token head (orange) would look;
    grey lines separate the repeated segments.
    """
    seg_len, rep, attn = example.seg_len, example.rep, example.attention
    t = attn.shape[-1]
    ind_q, ind_k = np.nonzero(induction_mask(seg_len, rep).numpy())
    prev_q = np.arange(1, t)
    fig, axes = plt.subplots(1, len(example.heads), figsize=(5.2 * len(example.heads), 4.8), squeeze=False)
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
    axes[0][0].legend(loc="upper right", fontsize=7)
    fig.suptitle(f"Attention on one sequence: {seg_len} random tokens repeated {rep} times ({example.model})")
    fig.tight_layout()
    return {"attention_examples": fig}
