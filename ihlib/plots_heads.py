"""Figures and tables for chapter 0: head scores, their uniform-attention baseline, rankings, attention examples."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.colors import TwoSlopeNorm

from ihlib.data import repeated_tokens
from ihlib.models import AnyGPT2, model_label
from ihlib.plots import head_label, head_labels, save_arrays, save_figure, save_json
from ihlib.scoring import (
    HeadScores,
    attention_patterns,
    check_k,
    induction_mask,
    position_scores_from_attention,
    renormalise_without_first,
)

SCORE_KINDS = ("induction", "shifting")


def uniform_head_scores(seg_len: int = 25, rep: int = 3, bos: bool = False) -> dict[str, float]:
    """Return the induction and shifting scores of a head that attends uniformly to every earlier token.

    Computed with the same renormalisation and masks as `head_scores`, on a causal uniform pattern
    `(T, T)`, `T = [1 +] rep * seg_len`: the score a head gets without looking at the tokens at all.
    """
    by_position = uniform_scores_by_position(seg_len, rep, bos)
    return {kind: float(np.nanmean(values)) for kind, values in by_position.items()}


def uniform_scores_by_position(seg_len: int = 25, rep: int = 3, bos: bool = False) -> dict[str, np.ndarray]:
    """Per-query-position scores `(T,)` of a uniform-attention head, as `scores_by_position` computes them."""
    offset = int(bos)
    t = offset + rep * seg_len
    causal = torch.tril(torch.ones(t, t, dtype=torch.float64))
    attn = renormalise_without_first(causal / causal.sum(-1, keepdim=True))
    return position_scores_from_attention(attn, seg_len, rep, offset)


def plot_scores_by_position(
    by_position: dict[str, np.ndarray],
    uniform: dict[str, np.ndarray],
    IH_list: list,
    Shifting_list: list,
    seg_len: int,
    title: str = "",
    save_dir: str | Path | None = None,
) -> plt.Figure:
    """Induction score of the listed IHs and shifting score of the listed shifting heads by query position.

    `by_position` from `scores_by_position` (`(L, H, T)` arrays), `uniform` from `uniform_scores_by_position`;
    dotted vertical lines mark the starts of the repeats, the dashed black curve is the uniform-attention head.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, kind, heads in ((axes[0], "induction", IH_list), (axes[1], "shifting", Shifting_list)):
        t = by_position[kind].shape[-1]
        for layer, head in heads:
            ax.plot(np.arange(t), by_position[kind][layer, head], label=head_label(layer, head), lw=1.3)
        ax.plot(np.arange(t), uniform[kind], "k--", lw=1, label="uniform attention")
        for start in range(seg_len, t, seg_len):
            ax.axvline(start, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("query position")
        ax.set_title(f"{kind} score by query position")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("score (attention weight)")
    axes[0].set_ylim(0, 1.05)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, save_dir, "scores_by_position")


def save_head_scores(scores: HeadScores, baseline: dict[str, float], save_dir: str | Path | None) -> None:
    """Save the `(n_layer, n_head)` score arrays (NPZ) and the uniform baseline (JSON) when `save_dir` is given."""
    save_arrays(save_dir, "head_scores", induction=scores.induction, shifting=scores.shifting)
    save_json(save_dir, "uniform_baseline", baseline)


def plot_head_scores(
    scores: HeadScores, baseline: dict[str, float], title: str = "", save_dir: str | Path | None = None
) -> plt.Figure:
    """Heatmaps (layer x head) of induction and shifting scores, coloured around the uniform baseline (white)."""
    n_layer, n_head = scores.induction.shape
    annotate = n_head <= 16 and n_layer <= 16
    fig, axes = plt.subplots(1, 2, figsize=(min(6 + 0.9 * n_head, 18), 1.2 + 0.45 * n_layer + 1.5))
    for ax, kind in zip(axes, SCORE_KINDS, strict=True):
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
    return save_figure(fig, save_dir, "head_scores")


def plot_top_heads(
    scores: HeadScores, baseline: dict[str, float], top: int = 10, save_dir: str | Path | None = None
) -> plt.Figure:
    """Bars of the `top` heads of each ranking with the uniform-attention baseline as a dashed line."""
    top = check_k(top, scores.induction.size, "top")
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.9 * top + 4), 3.8))
    rankings = {"induction": scores.IH_list[:top], "shifting": scores.Shifting_list[:top]}
    colours = {"induction": "tab:blue", "shifting": "tab:orange"}
    for ax, kind in zip(axes, SCORE_KINDS, strict=True):
        heads = rankings[kind]
        values = [getattr(scores, kind)[l, h] for l, h in heads]
        ax.bar(range(top), values, color=colours[kind], label=f"{kind} score")
        ax.axhline(baseline[kind], color="black", linestyle="--", label="uniform-attention head")
        ax.set_xticks(range(top), head_labels(heads), rotation=60, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("head, ranked")
        ax.set_ylabel(f"{kind} score")
        ax.set_title(f"Top {top} {'induction' if kind == 'induction' else 'shifting'} heads")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, save_dir, "top_heads")


def ranking_table(scores: HeadScores, baseline: dict[str, float], top: int = 10) -> pd.DataFrame:
    """Table of the `top` heads of both rankings with their scores and score / uniform baseline."""
    top = check_k(top, scores.induction.size, "top")
    rows = []
    pairs = zip(scores.IH_list[:top], scores.Shifting_list[:top], strict=True)
    for rank, ((li, hi), (ls, hs)) in enumerate(pairs, start=1):
        rows.append(
            {
                "rank": rank,
                "induction head": head_label(li, hi),
                "induction score": scores.induction[li, hi],
                "× baseline (ind.)": scores.induction[li, hi] / baseline["induction"],
                "shifting head": head_label(ls, hs),
                "shifting score": scores.shifting[ls, hs],
                "× baseline (shift.)": scores.shifting[ls, hs] / baseline["shifting"],
            }
        )
    return pd.DataFrame(rows).set_index("rank").round(3)


def plot_attention_examples(
    model: AnyGPT2,
    heads: dict[str, list[int]],
    seg_len: int = 10,
    rep: int = 3,
    seed: int = 0,
    save_dir: str | Path | None = None,
) -> plt.Figure:
    """Attention pattern `(query, key)` of each named head on one repeated random sequence.

    Hollow circles mark where an ideal induction head (green) and an ideal previous-token head (orange) would look;
    grey lines separate the repeated segments. `heads` maps a caption to `[layer, head]`.
    """
    ids = repeated_tokens(1, seg_len, model.config.vocab_size, rep=rep, seed=seed)
    attn = attention_patterns(model, ids)[:, 0].numpy()  # (n_layer, n_head, T, T)
    t = ids.shape[1]
    ind_q, ind_k = np.nonzero(induction_mask(seg_len, rep).numpy())
    prev_q = np.arange(1, t)
    fig, axes = plt.subplots(1, len(heads), figsize=(5.2 * len(heads), 4.8), squeeze=False)
    for ax, (caption, (layer, head)) in zip(axes[0], heads.items(), strict=True):
        image = ax.imshow(attn[layer, head], cmap="Greys", vmin=0, vmax=1)
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
    fig.suptitle(f"Attention on one sequence: {seg_len} random tokens repeated {rep} times ({model_label(model)})")
    fig.tight_layout()
    save_figure(fig, save_dir, "attention_examples")
    shown = np.stack([attn[layer, head] for layer, head in heads.values()])
    save_arrays(save_dir, "attention_examples", input_ids=ids[0].numpy(), heads=list(heads.values()), attention=shown)
    return fig
