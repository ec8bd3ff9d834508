"""Teaching figures: page width, text of at least 9 pt, labelled axes, and the baselines drawn where they belong."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from ihlib.report.figure_style import PAGE_WIDTH_IN
from ihlib.report.plots_teaching import (
    plot_ablation_copying,
    plot_ov_circuit_block,
    plot_ov_copying,
    plot_ov_copying_vs_induction,
    plot_position_loss,
    plot_training_dynamics,
)
from ihlib.tools.ablation import Ablation, copying_under_ablations
from ihlib.tools.dynamics import training_dynamics
from ihlib.tools.losses import position_loss
from ihlib.tools.ov_copying import ov_circuit_block, ov_copying_scores

pytestmark = pytest.mark.slow  # executes notebooks or draws figures


def smallest_rendered_pt(fig: plt.Figure) -> float:
    """Smallest visible text size in points once the figure is scaled to at most the page width."""
    fig.canvas.draw()
    scale = min(1.0, PAGE_WIDTH_IN / fig.get_figwidth())
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * scale


def dashed_values(ax: plt.Axes, *, horizontal: bool) -> list[float]:
    """Positions of the dashed or dotted straight lines drawn across `ax` (axhline / axvline)."""
    values = []
    for line in ax.get_lines():
        xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if line.get_linestyle() in ("--", ":") and len(xs) == 2:
            if horizontal and ys[0] == ys[1]:
                values.append(float(ys[0]))
            if not horizontal and xs[0] == xs[1]:
                values.append(float(xs[0]))
    return values


def synthetic_dynamics():
    """Three checkpoints of a 2-layer, 2-head model."""
    checkpoints = [
        {
            "step": s,
            "loss": 5.0 - s / 100,
            "induction": [[0.0, 0.01], [0.02, s / 300]],
            "shifting": [[s / 400, 0], [0, 0]],
        }
        for s in (0, 100, 200)
    ]
    return training_dynamics({"checkpoints": checkpoints, "log": {"losses": [5.0, 4.0]}})


@pytest.fixture(scope="module")
def figures(small_model):
    """Every teaching figure, on the small random model and a synthetic training record."""
    scores = ov_copying_scores(small_model)
    conditions = [Ablation(), Ablation(((1, 0),), "zero"), Ablation(((1, 0), (1, 1)), "mean")]
    ablation = copying_under_ablations(small_model, conditions, seg_len=6, batch_size=8, n_boot=50)
    loss = position_loss(small_model, seg_len=6, batch_size=8, n_boot=50)
    figs = {
        "ov": plot_ov_copying(scores),
        "ov_vs_induction": plot_ov_copying_vs_induction(scores, np.full((2, 4), 0.3), uniform_induction=0.05),
        "block": plot_ov_circuit_block(ov_circuit_block(small_model, 1, 0, list(range(20))), list(range(20))),
        "ablation": plot_ablation_copying(ablation),
        "loss": plot_position_loss(loss),
        "dynamics": plot_training_dynamics(synthetic_dynamics(), baselines={"induction": 0.04, "shifting": 0.05}),
    }
    yield figs, ablation, loss
    for fig in figs.values():
        plt.close(fig)


def test_every_figure_fits_the_page_with_text_of_at_least_9_pt(figures):
    """Width at most the page's, every visible text at least 9 pt, every axes with labels on both axes."""
    for name, fig in figures[0].items():
        assert fig.get_figwidth() <= PAGE_WIDTH_IN + 1e-9, name
        assert smallest_rendered_pt(fig) >= 9, name
        assert fig.get_suptitle(), name
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>":
                assert ax.get_ylabel() or ax.get_xlabel(), name


def test_baselines_are_drawn_at_their_values(figures):
    """Ablation: intact error and chance; loss: ln(vocab); dynamics: the uniform-attention scores."""
    figs, ablation, loss = figures
    error_axes = figs["ablation"].axes[0]
    assert dashed_values(error_axes, horizontal=False) == pytest.approx([ablation.error[0], 96 / 97])
    assert loss.uniform_loss in dashed_values(figs["loss"].axes[0], horizontal=True)
    induction_axes, shifting_axes = figs["dynamics"].axes[:2]
    assert dashed_values(induction_axes, horizontal=True) == [0.04]
    assert dashed_values(shifting_axes, horizontal=True) == [0.05]


def test_ov_heatmaps_mark_chance_and_zero_on_their_colour_bars(figures):
    """The fraction's colour bar marks 1/97, the eigen score's marks 0; the eigen scale is symmetric."""
    fig = figures[0]["ov"]
    left, right = fig.axes[0], fig.axes[1]
    assert dashed_values(left.images[0].colorbar.ax, horizontal=True) == pytest.approx([1 / 97])
    assert dashed_values(right.images[0].colorbar.ax, horizontal=True) == [0.0]
    assert (right.images[0].norm.vmin, right.images[0].norm.vmax) == (-1, 1)


def test_the_ov_copying_title_says_when_the_sources_are_a_sample(small_model):
    """Every token: "share of source tokens ..."; a sample: how many, of how many."""
    whole = plot_ov_copying(ov_copying_scores(small_model)).axes[0].get_title()
    sampled = plot_ov_copying(ov_copying_scores(small_model, max_sources=40)).axes[0].get_title()
    assert whole.startswith("share of source tokens whose own token wins")
    assert sampled.startswith("share of 40 sampled source tokens (of 97) whose own token wins")
