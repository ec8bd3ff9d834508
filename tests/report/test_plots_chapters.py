"""Chapters 1-4: every figure fits the page width with every visible text of at least 9 pt, 20-head lists included;
z-score colour scales are symmetric around 0 and mark their baseline on the colour bar."""

from __future__ import annotations

from itertools import pairwise

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import random_gpt2
from matplotlib.text import Text
from transformers import GPT2LMHeadModel

from ihlib.claims.diagonal import qkov_blocks, qkov_zscores
from ihlib.claims.projection import project
from ihlib.claims.shuffling import shuffle, shuffle_controls, shuffle_sweep
from ihlib.claims.subspaces import head_spectra, match_subspaces
from ihlib.core.circuits import CompositionScores
from ihlib.core.copying import CopyingSettings
from ihlib.core.factored import head_subspaces, stacked_qk_svd
from ihlib.model.weights import head_weights
from ihlib.report.figure_style import PAGE_WIDTH_IN
from ihlib.report.plots_experiments import (
    plot_projection,
    plot_repetitions,
    plot_shuffle,
    plot_shuffle_controls,
    plot_shuffle_sweep,
    plot_stack_energy,
)
from ihlib.report.plots_weights import (
    plot_composition_scores,
    plot_energy_profiles,
    plot_matching_overview,
    plot_qkov_blocks,
    plot_qkov_zscores,
    plot_subspace_matching,
)

pytestmark = pytest.mark.slow  # executes notebooks or draws figures

MIN_PT = 9
RANKS = [2, 3, 5, 10]  # the book's ranks
STACK_TITLE = "Spectrum of the stacked W_QK of 4 induction heads (a random GPT-2: 4 layers x 4 heads, d_model 32)"
IH_8 = [[layer, head] for layer in (3, 2) for head in range(4)]  # 8 listed heads of an embedded-shaped model
SH_8 = [[layer, head] for layer in (1, 0) for head in range(4)]
pytestmark = pytest.mark.filterwarnings("ignore:Only . heads lie outside:UserWarning")


def rendered_width(fig: plt.Figure) -> float:
    """Width in inches the page gets: the figure's, or more when some text sticks out of it (tight bounding box)."""
    fig.canvas.draw()
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    return max(fig.get_figwidth(), tight.width)


def smallest_text(fig: plt.Figure) -> tuple[float, str]:
    """Smallest visible, non-empty text in points once the figure is scaled to at most the page width, and the text."""
    scale = min(1.0, PAGE_WIDTH_IN / rendered_width(fig))
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    smallest = min(texts, key=Text.get_fontsize)
    return smallest.get_fontsize() * scale, smallest.get_text()


def crowded_ticks(fig: plt.Figure) -> list[str]:
    """Visible tick labels that overlap their neighbour on the same axis, as 'label/label'."""
    renderer = fig.canvas.get_renderer()
    crowded = []
    for ax in fig.axes:
        for labels, side in ((ax.get_xticklabels(), "x0"), (ax.get_yticklabels(), "y0")):
            shown = [(t.get_window_extent(renderer), t.get_text()) for t in labels if t.get_visible() and t.get_text()]
            shown.sort(key=lambda item: getattr(item[0], side))
            crowded += [f"{a}/{b}" for (box_a, a), (box_b, b) in pairwise(shown) if box_a.overlaps(box_b)]
    return crowded


def heads_of(layers: list[int], heads: range) -> list[list[int]]:
    """Heads `[layer, head]` of `layers` (in that order) with the numbers `heads`."""
    return [[layer, head] for layer in layers for head in heads]


def weight_figures(model: GPT2LMHeadModel, IH: list, SH: list, name: str) -> dict[str, plt.Figure]:
    """Every figure of chapters 1 and 2 for `model` with listed IHs `IH` and shifting heads `SH`, keys prefixed."""
    W_all = head_weights(model)
    W_E = model.transformer.wte.weight.detach()
    blocks = qkov_blocks(W_all, IH[:4], Shifting_list=SH, n_partners=2, W_E=W_E, block=64)
    zscores = qkov_zscores(W_all, IH, SH, num_samp=50)
    subspaces = head_subspaces(W_all)
    options = dict(ranks=RANKS, num_samp=20)
    comparisons = [
        match_subspaces(subspaces, IH_list=IH, **options),
        match_subspaces(subspaces, Shifting_list=SH, **options),
        match_subspaces(subspaces, IH_list=IH, Shifting_list=SH, **options),
    ]
    figures = {
        **plot_qkov_blocks(blocks),
        **plot_qkov_zscores(zscores),
        **plot_energy_profiles(head_spectra(subspaces, IH, SH, ranks=RANKS)),
        **plot_matching_overview(comparisons),
    }
    for comparison in comparisons:
        mode = comparison.mode.replace(" ", "_")
        figures |= {f"{mode}_{key}": fig for key, fig in plot_subspace_matching(comparison).items()}
    return {f"{name}/{key}": fig for key, fig in figures.items()}


def experiment_figures() -> dict[str, plt.Figure]:
    """Every figure of chapters 3 and 4 on a small model: shuffles, controls, a sweep to K = 12, projections."""
    model = random_gpt2(n_layer=4, n_head=4, seed=7)
    heads = heads_of([3, 2, 1], range(4))
    settings = CopyingSettings(seg_len=6, vocab_size=97, batch_size=2, n_exp=2)
    quiet = dict(settings=settings, progress=False)
    sweep = shuffle_sweep(model, heads, range(2, 13), component="OV", **quiet)
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    figures = {
        **plot_shuffle(shuffle(model, heads[:4], **quiet)),
        **plot_shuffle_controls(shuffle_controls(model, heads[:4], component="QK", exclude=heads[:5], **quiet)),
        **plot_shuffle_controls(
            shuffle_controls(model, [[1, 0], [1, 1]], component="OV", exclude=[[1, 2], [1, 3]], **quiet)
        ),
        **plot_shuffle_sweep(sweep, counting=heads[:3]),
        **plot_repetitions(
            sweep, heads[:3], title="Shuffling OV of the top K shifting-ranked heads: each of the 10 repetitions"
        ),
        **plot_stack_energy(stacked_qk_svd(head_weights(model), ih)[0].numpy(), [32], title=STACK_TITLE),
    }
    for out in (True, False):
        result = project(model, head_weights(model), ih, heads[:4], project_out=out, max_rank=32, step=4, **quiet)
        figures |= plot_projection(result)
    return figures


@pytest.fixture(scope="module")
def embedded() -> GPT2LMHeadModel:
    """A random model of the embedded models' shape: 4 layers of 8 heads, d_head 16."""
    return random_gpt2(n_layer=4, n_head=8, n_embd=128, vocab=97, seed=3)


@pytest.fixture(scope="module")
def figures(embedded) -> dict[str, plt.Figure]:
    """Every figure of chapters 1-4: the embedded-shaped model, 20 listed heads of 12 per layer, experiments."""
    wide = random_gpt2(n_layer=4, n_head=12, n_embd=192, vocab=97, seed=4)
    wide_ih, wide_sh = (
        heads_of([3], range(12)) + heads_of([2], range(8)),
        heads_of([0], range(12)) + heads_of([1], range(8)),
    )
    with plt.rc_context({"figure.max_open_warning": 0}):
        figs = {
            **weight_figures(embedded, IH_8, SH_8, "8 heads"),
            **weight_figures(wide, wide_ih, wide_sh, "20 heads"),
            **experiment_figures(),
        }
    yield figs
    for fig in figs.values():
        plt.close(fig)


def test_every_figure_fits_the_page_with_text_of_at_least_9_pt(figures):
    """Scaled to at most the page width (never up), every visible text is at least 9 pt; no two tick labels of an
    axis overlap; every figure has a title."""
    too_small = {}
    for name, fig in figures.items():
        points, text = smallest_text(fig)
        if points < MIN_PT - 1e-9:
            too_small[name] = f"{rendered_width(fig):.1f} in wide, {points:.1f} pt: {text[:40]!r}"
    assert not too_small, "text below 9 pt at page width:\n" + "\n".join(f"{k}: {v}" for k, v in too_small.items())
    crowded = {name: crowded_ticks(fig) for name, fig in figures.items() if crowded_ticks(fig)}
    assert not crowded, f"overlapping tick labels: {crowded}"
    assert all(fig.get_suptitle() or any(ax.get_title() for ax in fig.axes) for fig in figures.values())


def test_every_panel_has_axis_labels(figures):
    """Every axes that draws data names at least one of its axes (colour bars their quantity)."""
    for name, fig in figures.items():
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel() or ax.get_ylabel(), f"{name}: unlabelled axes {ax.get_title()!r}"


def colour_bar_marks(mappable) -> list[float]:
    """Values of the horizontal lines drawn across the colour bar of `mappable`, ascending."""
    return sorted(float(line.get_ydata()[0]) for line in mappable.colorbar.ax.get_lines())


def test_zscore_heatmap_is_symmetric_around_0_and_marks_the_baseline_and_z_2(embedded, figures):
    """Diverging colours with vmin = -vmax, wide enough to show the random pairs' 95th percentile and z = 2."""
    result = qkov_zscores(head_weights(embedded), IH_8, SH_8, num_samp=50)
    drawn = plot_qkov_zscores(result)
    mesh = drawn["qkov_zscores_heatmap"].axes[0].collections[0]
    q95 = float(np.percentile(result.baseline, 95))
    assert mesh.get_cmap().name == "RdBu_r" and mesh.norm.vmin == pytest.approx(-mesh.norm.vmax)
    assert colour_bar_marks(mesh) == pytest.approx(sorted([q95, 2.0]))
    assert mesh.norm.vmax > max(2.0, abs(q95), float(np.abs(result.zscores).max()))
    wide = figures["20 heads/qkov_zscores_heatmap"].axes[0].collections[0]
    assert wide.norm.vmin == pytest.approx(-wide.norm.vmax) and len(colour_bar_marks(wide)) == 2
    for fig in drawn.values():
        plt.close(fig)


def test_matching_heatmaps_mark_both_baselines_on_their_colour_bars(embedded):
    """Scores on a fixed 0..1 scale; each rank's colour bar marks both baselines' 95th percentiles at that rank."""
    result = match_subspaces(head_subspaces(head_weights(embedded)), IH_list=IH_8, ranks=RANKS, num_samp=20)
    drawn = plot_subspace_matching(result)
    for m, method in enumerate(result.methods):
        fig = drawn[f"subspace_matching_{method}"]
        heatmaps = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(heatmaps) == len(RANKS)
        for r, image in enumerate(heatmaps):
            baselines = (result.gaussian_baseline[m, r], result.head_baseline[m, r])
            assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
            assert colour_bar_marks(image) == pytest.approx(sorted(np.percentile(b, 95) for b in baselines))
        plt.close(fig)


def synthetic_compositions(n_layer: int, n_head: int) -> CompositionScores:
    """Composition grids `(L, H, L, H)` of seeded uniform scores on the composable pairs, NaN elsewhere."""
    rng = np.random.default_rng(0)
    layers = np.arange(n_layer)
    composable = layers[None, None, :, None] < layers[:, None, None, None]
    shape = (n_layer, n_head, n_layer, n_head)
    grids = {kind: np.where(composable, rng.uniform(0, 0.3, shape), np.nan) for kind in ("Q", "K", "V")}
    return CompositionScores(grids)


@pytest.mark.parametrize(("n_layer", "n_head"), [(4, 8), (12, 12)])
def test_composition_figure_fits_the_page_with_legible_uncrowded_labels(n_layer, n_head):
    """The composition heatmaps (embedded-model and GPT-2-small shapes) fit the page, text >= 9 pt, no crowded ticks;
    listed heads' labels are coloured and their composable pairs outlined."""
    IH, SH = [[2, 0], [2, 1]], [[1, 0], [0, 1], [3, 0]]
    fig = plot_composition_scores(synthetic_compositions(n_layer, n_head), IH_list=IH, Shifting_list=SH)[
        "composition_scores"
    ]
    assert rendered_width(fig) <= PAGE_WIDTH_IN + 0.05
    size, text = smallest_text(fig)
    assert size >= MIN_PT, text
    assert crowded_ticks(fig) == []
    first = fig.axes[0]
    assert len(first.patches) == 4  # two IHs x two shifting heads in earlier layers (L3H0 is not)
    if n_layer * n_head <= 48:
        red = [t.get_text() for t in first.get_yticklabels() if t.get_color() == "tab:red"]
        assert red == ["L2H0", "L2H1"]
    plt.close(fig)
