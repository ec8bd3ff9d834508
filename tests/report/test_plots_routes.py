"""The route figure: page width, text of at least 9 pt at that width, one bar row per IH plus copying, a title."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text
from route_models import route_model

from ihlib.report.figure_style import PAGE_WIDTH_IN
from ihlib.report.plots_routes import plot_route_shares
from ihlib.report.route_tables import route_conditions_table, route_shares_table
from ihlib.report.saving import save_result
from ihlib.tools.route_shares import route_analysis
from ihlib.tools.routes import PatchSettings

pytestmark = pytest.mark.slow  # draws figures


@pytest.fixture(scope="module")
def figure():
    analysis = route_analysis(
        route_model("mlp"), [(1, 0)], [(0, 0)], settings=PatchSettings(seg_len=10, burn_in=2, batch_size=20), n_boot=100
    )
    fig = plot_route_shares(analysis)["route_shares"]
    yield analysis, fig
    plt.close(fig)


def test_the_figure_fits_the_page_with_text_of_at_least_9_pt(figure):
    _, fig = figure
    fig.canvas.draw()
    width = max(fig.get_figwidth(), fig.get_tightbbox(fig.canvas.get_renderer()).width)
    assert width <= PAGE_WIDTH_IN + 0.05
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert min(t.get_fontsize() for t in texts) >= 9
    assert fig.get_suptitle()


def test_one_row_per_ih_and_one_for_copying_in_each_panel(figure, tmp_path):
    analysis, fig = figure
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_yticklabels()] == ["L1H0", "copying"]
        assert ax.get_xlabel() and ax.get_ylabel()
    paths = save_result(analysis, tmp_path, {"route_shares": fig})
    assert (tmp_path / "route_shares.png").is_file() and paths


def test_the_tables_have_a_row_per_condition_and_per_ih_plus_copying(figure):
    analysis, _ = figure
    conditions = route_conditions_table(analysis)
    assert list(conditions.index) == ["nothing", "direct", "through MLPs", "both"]
    assert list(conditions.columns) == ["layer-1 IHs' induction", "top-1 copy error"]
    assert all("[" in cell for cell in conditions.to_numpy().ravel())
    shares = route_shares_table(analysis)
    assert list(shares.index) == ["L1H0", "copying"] and shares.shape == (2, 3)
