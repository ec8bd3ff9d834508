"""Chapter 0's helpers: the uniform-attention baseline is what head_scores gives a content-blind head; figures and
tables carry titles, labels, baselines and save their data."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib.heads.scoring import (
    attention_example,
    head_scores,
    scores_by_position,
    uniform_head_scores,
    uniform_scores_by_position,
)
from ihlib.model.errors import IHLibError
from ihlib.report.plots_heads import plot_attention_examples, plot_head_scores, plot_scores_by_position, plot_top_heads
from ihlib.report.saving import save_figures, save_result
from ihlib.report.tables import ranking_table

pytestmark = pytest.mark.slow  # executes notebooks or draws figures


def content_blind(model):
    """Zero the query and key weights and biases of every head: each head then attends uniformly to the past."""
    d_model = model.config.n_embd
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, : 2 * d_model] = 0.0
            block.attn.c_attn.bias[: 2 * d_model] = 0.0
    return model


@pytest.mark.parametrize(("seg_len", "rep"), [(7, 3), (5, 2), (10, 4)])
def test_uniform_baseline_is_the_score_of_a_content_blind_head(seg_len, rep):
    """head_scores of a model whose heads attend uniformly equals uniform_head_scores for every head."""
    model = content_blind(random_gpt2(n_layer=2, n_head=2, n_embd=16, vocab=50, n_pos=64))
    scores = head_scores(model, batch_size=3, seg_len=seg_len, rep=rep, seed=1)
    baseline = uniform_head_scores(seg_len, rep)
    np.testing.assert_allclose(scores.induction, baseline["induction"], rtol=1e-5)
    np.testing.assert_allclose(scores.shifting, baseline["shifting"], rtol=1e-5)


@pytest.mark.parametrize(("seg_len", "rep"), [(7, 3), (25, 3), (20, 2)])
def test_uniform_baseline_matches_its_closed_form(seg_len, rep):
    """Query i spreads 1/i over keys 1..i: shifting = mean 1/i over i >= 2; induction = mean floor(i/L)/i."""
    t = rep * seg_len
    queries = np.arange(seg_len, t)
    induction = np.mean((queries // seg_len) / queries)
    shifting = np.mean(1.0 / np.arange(2, t))
    baseline = uniform_head_scores(seg_len, rep)
    assert baseline["induction"] == pytest.approx(induction, rel=1e-12)
    assert baseline["shifting"] == pytest.approx(shifting, rel=1e-12)


def test_uniform_baseline_shrinks_with_sequence_length():
    """Longer segments leave a content-blind head less weight on the right key."""
    short, long = uniform_head_scores(5, 3), uniform_head_scores(40, 3)
    assert long["induction"] < short["induction"] and long["shifting"] < short["shifting"]


@pytest.fixture(scope="module")
def scored():
    """A small random model and its head scores."""
    model = random_gpt2(n_layer=2, n_head=4, n_embd=32, vocab=97, n_pos=64)
    return model, head_scores(model, batch_size=4, seg_len=8, rep=3, seed=0)


def test_heatmaps_are_titled_labelled_and_mark_the_baseline(scored, tmp_path):
    """Both panels have titles and axis labels; the colour bar carries the baseline; the PNG is written."""
    _, scores = scored
    baseline = uniform_head_scores(8, 3)
    figures = plot_head_scores(scores, title="t")
    save_figures(figures, tmp_path)
    fig = figures["head_scores"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Induction score per head", "Shifting score per head"]
    assert all(ax.get_xlabel() == "head" and ax.get_ylabel() == "layer" for ax in panels)
    assert any(f"{baseline['induction']:.3f}" in ax.get_ylabel() for ax in fig.axes)
    assert (tmp_path / "head_scores.png").is_file()
    plt.close(fig)


def test_top_heads_bars_follow_the_ranking_with_a_baseline_line(scored, tmp_path):
    """Bar heights are the ranked scores, tick labels are L{l}H{h}, and a dashed line sits at the baseline."""
    _, scores = scored
    baseline = uniform_head_scores(8, 3)
    figures = plot_top_heads(scores, top=3)
    save_figures(figures, tmp_path)
    fig = figures["top_heads"]
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    expected = [scores.induction[l, h] for l, h in scores.IH_list[:3]]
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"L{l}H{h}" for l, h in scores.IH_list[:3]]
    assert any(np.allclose(line.get_ydata(), baseline["induction"]) for line in ax.get_lines())
    assert (tmp_path / "top_heads.png").is_file()
    plt.close(fig)
    with pytest.raises(IHLibError, match="top=9"):
        plot_top_heads(scores, top=9)


def test_ranking_table_lists_heads_best_first_with_ratio_to_baseline(scored):
    """Rows follow both rankings; the ratio column is score / baseline."""
    _, scores = scored
    baseline = uniform_head_scores(8, 3)
    table = ranking_table(scores, top=4)
    assert list(table.index) == [1, 2, 3, 4]
    assert list(table["induction head"]) == [f"L{l}H{h}" for l, h in scores.IH_list[:4]]
    l, h = scores.Shifting_list[0]
    assert table["× baseline (shift.)"].iloc[0] == pytest.approx(scores.shifting[l, h] / baseline["shifting"], abs=1e-3)


def test_attention_examples_show_and_save_the_chosen_heads(scored, tmp_path):
    """One panel per head, titled with its label; the NPZ holds each shown head's `(T, T)` pattern."""
    model, _ = scored
    example = attention_example(model, {"a": [1, 2], "b": [0, 3]}, seg_len=5, rep=3)
    figures = plot_attention_examples(example)
    save_result(example, tmp_path, figures)
    fig = figures["attention_examples"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["L1H2: a", "L0H3: b"]
    saved = np.load(tmp_path / "attention_examples.npz")
    assert saved["attention"].shape == (2, 15, 15)
    np.testing.assert_allclose(saved["attention"].sum(-1), 1.0, atol=1e-5)
    assert saved["heads"].tolist() == [[1, 2], [0, 3]]
    plt.close(fig)


def test_scores_and_baseline_are_saved_as_data(scored, tmp_path):
    """save_result writes the score arrays (NPZ) and a record with the baseline of the scores' own setting (JSON)."""
    _, scores = scored
    baseline = uniform_head_scores(8, 3)
    save_result(scores, tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "head_scores.npz")["induction"], scores.induction)
    assert json.loads((tmp_path / "head_scores.json").read_text())["uniform"] == baseline


def test_uniform_scores_by_position_are_one_over_the_visible_positions():
    by_position = uniform_scores_by_position(seg_len=4, rep=2)
    # after removing position 0, query q spreads over positions 1..q: 1/q each
    np.testing.assert_allclose(by_position["shifting"][2:], 1 / np.arange(2, 8))
    np.testing.assert_allclose(by_position["induction"][4:], 1 / np.arange(4, 8))
    assert np.isnan(by_position["induction"][:4]).all() and np.isnan(by_position["shifting"][:2]).all()


def test_head_scores_are_the_position_means_of_scores_by_position(small_model):
    by_position = scores_by_position(small_model, batch_size=3, seg_len=5, rep=3, seed=2)
    scores = head_scores(small_model, batch_size=3, seg_len=5, rep=3, seed=2)
    np.testing.assert_allclose(np.nanmean(by_position.shifting, -1), scores.shifting)
    assert by_position.induction.shape == (2, 4, 15)


def test_scores_by_position_figure_draws_each_head_and_the_uniform_curve(small_model):
    by_position = scores_by_position(small_model, batch_size=2, seg_len=5, rep=3)
    fig = plot_scores_by_position(by_position, [[1, 0], [1, 2]], [[0, 1]])["scores_by_position"]
    assert [len(ax.lines) for ax in fig.axes] == [3 + 2, 2 + 2]  # heads + uniform curve + repeat markers


def rendered_tick_points(fig: plt.Figure) -> float:
    """Smallest tick-label size in points once the figure is scaled down to the page width (never up)."""
    from ihlib.report.figure_style import PAGE_WIDTH_IN

    scale = min(1.0, PAGE_WIDTH_IN / fig.get_figwidth())
    sizes = [label.get_fontsize() for ax in fig.axes for label in ax.get_xticklabels() + ax.get_yticklabels()]
    return min(sizes) * scale


def test_chapter_0_figures_keep_tick_labels_of_9_points_at_page_width(scored):
    """Every figure of chapter 0 fits the page width with tick labels of at least 9 pt, 12-head models included."""
    from ihlib.heads.scoring import attention_example, scores_by_position

    model, scores = scored
    wide = random_gpt2(n_layer=2, n_head=12, n_embd=48, vocab=97, n_pos=64)
    wide_scores = head_scores(wide, batch_size=2, seg_len=8, rep=3, seed=0)
    by_position = scores_by_position(model, batch_size=2, seg_len=8, rep=3, seed=0)
    example = attention_example(model, {"a": [0, 0], "b": [1, 1]}, seg_len=6, rep=3, seed=0)
    figures = {
        **plot_head_scores(scores),
        "head_scores_12": plot_head_scores(wide_scores)["head_scores"],
        **plot_top_heads(scores, top=8),
        **plot_scores_by_position(by_position, scores.IH_list[:2], scores.Shifting_list[:2]),
        **plot_attention_examples(example),
    }
    small = {name: rendered_tick_points(fig) for name, fig in figures.items() if rendered_tick_points(fig) < 9}
    assert not small, f"tick labels below 9 pt at page width: {small}"
    for fig in figures.values():
        plt.close(fig)
