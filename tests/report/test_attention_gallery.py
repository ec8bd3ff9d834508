"""Every head's attention: the gallery draws one panel per head framed by its kind, splits GPT-2-sized models into
figures of page width, and the interactive view carries every head's attention inline, with nothing to fetch."""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import random_gpt2

from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import attention_example, attention_patterns, head_scores
from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import ParameterError
from ihlib.report.attention_gallery import ROLE_COLOURS, every_head_example, plot_attention_gallery
from ihlib.report.attention_view import attention_view, attention_view_html, view_data
from ihlib.report.figure_style import PAGE_WIDTH_IN

pytestmark = pytest.mark.slow  # draws figures


@pytest.fixture(scope="module")
def small():
    """A 2 x 4 random model, every head's attention on 6 tokens x 3, and its head table."""
    model = random_gpt2()
    example = every_head_example(model, seg_len=6, rep=3, seed=0)
    return model, example, head_table(head_scores(model, batch_size=2, seg_len=6, rep=3))


def test_every_head_example_holds_each_heads_pattern_in_order(small):
    """Entry `layer * n_head + head` is that head's attention on the example sequence, as `attention_patterns` says."""
    model, example, _ = small
    ids = repeated_tokens(1, 6, model.config.vocab_size, rep=3, seed=0)
    direct = attention_patterns(model, ids)[:, 0].numpy()  # (n_layer, n_head, T, T)
    assert example.attention.shape == (8, 18, 18)
    np.testing.assert_allclose(example.attention, direct.reshape(8, 18, 18), atol=1e-6)
    assert example.captions[5] == "L1H1"


def test_gallery_draws_one_framed_panel_per_head(small, copy_model):
    """One image per head; the frames of the copy model's heads take the colour of their kind."""
    _, example, kinds = small
    figures = plot_attention_gallery(example, kinds)
    assert list(figures) == ["attention_gallery"]
    axes = figures["attention_gallery"].axes
    assert len([ax for ax in axes if ax.images]) == 8
    copy_example = every_head_example(copy_model, seg_len=8, rep=3)
    copy_kinds = head_table(head_scores(copy_model, batch_size=4, seg_len=8, rep=3))
    fig = plot_attention_gallery(copy_example, copy_kinds)["attention_gallery"]
    roles = copy_kinds.roles().ravel()
    frames = [plt.matplotlib.colors.to_hex(ax.spines["top"].get_edgecolor()) for ax in fig.axes if ax.images]
    expected = [plt.matplotlib.colors.to_hex(ROLE_COLOURS[role]) for role in roles]
    assert frames == expected and "induction head" in roles and "shifting head" in roles
    plt.close("all")


def test_gallery_of_a_gpt2_small_shape_fits_the_page_in_two_figures():
    """12 x 12 heads: two figures of 6 layers, each at most the page width, panels at least 0.45 inch (45 px) wide."""
    model = random_gpt2(n_layer=12, n_head=12, n_embd=48, vocab=97, n_pos=64)
    example = every_head_example(model, seg_len=5, rep=3)
    figures = plot_attention_gallery(example, head_table(head_scores(model, batch_size=2, seg_len=5, rep=3)))
    assert list(figures) == ["attention_gallery_layers_0_5", "attention_gallery_layers_6_11"]
    for fig in figures.values():
        assert fig.get_figwidth() <= PAGE_WIDTH_IN + 1e-9
        panels = [ax for ax in fig.axes if ax.images]
        assert len(panels) == 72
        assert min(ax.get_position().width for ax in panels) * fig.get_figwidth() >= 0.45
    plt.close("all")


def test_gallery_refuses_an_example_without_every_head(small):
    model, _, kinds = small
    partial = attention_example(model, {"a": [0, 0]}, seg_len=6, rep=3)
    with pytest.raises(ParameterError, match="every_head_example"):
        plot_attention_gallery(partial, kinds)


def test_view_data_holds_every_heads_attention_in_percent(small):
    """`att[layer][head][query][key]` is the pattern rounded to whole percents; kinds and labels per head."""
    _, example, kinds = small
    data = view_data(example, kinds, selected=[1, 2])
    att = np.array(data["att"])
    assert att.shape == (2, 4, 18, 18)
    assert np.abs(att - example.attention.reshape(2, 4, 18, 18) * 100).max() <= 0.5 + 1e-6
    assert data["labels"][1][2] == "L1H2" and data["selected"] == [1, 2] and len(data["tokens"]) == 18
    assert data["roles"] == kinds.roles().tolist()
    assert all(re.fullmatch("#[0-9a-f]{6}", colour) for colour in data["colours"].values())  # CSS colours


def test_view_is_self_contained_html_with_inline_data_and_script(small):
    """No external resource (src, href, CDN, import): the page works offline; the inline JSON parses back."""
    _, example, kinds = small
    html = attention_view_html(example, kinds)
    assert not re.search(r"\b(src|href)\s*=|https?://|import\s", html)
    data = json.loads(re.search(r'class="ihav-data">(.*?)</script>', html, re.S).group(1).replace("<\\/", "</"))
    assert data["tokens"] == [str(int(t)) for t in example.input_ids]
    assert attention_view(example, kinds).data == html
