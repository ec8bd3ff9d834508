"""Claims 1-2 in weight space: factored z-scores and subspace matching equal slow dense computations on small shapes;
matching scores have their defining properties; baselines are drawn as documented; bad input is refused."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ihlib.claims.diagonal import QKOVZScores, qkov_blocks, qkov_zscores
from ihlib.claims.subspaces import (
    SubspaceMatching,
    energy_profile,
    gaussian_baseline,
    head_spectra,
    match_subspaces,
    subspace_match_score,
)
from ihlib.core.circuits import diagonal_zscore, embedding_basis, qkov_zscore_grid
from ihlib.core.factored import head_subspaces
from ihlib.core.stats import binomial_tail, percentile_of
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import draw_head_pairs
from ihlib.model.errors import IHLibError
from ihlib.model.weights import head_weights, ov, qk
from ihlib.report.plots_weights import (
    plot_energy_profiles,
    plot_matching_overview,
    plot_qkov_zscores,
    plot_subspace_matching,
)
from ihlib.report.saving import save_result
from ihlib.report.seed_notebook import qkov_matching, subspace_matching
from ihlib.report.tables import listed_heads_table, matching_table, zscore_overview, zscore_table

N_LAYER, N_HEAD, D_MODEL, D_HEAD = 3, 4, 32, 8
IH = [[2, 1], [2, 3], [1, 0]]
SH = [[0, 2], [1, 1], [0, 0]]
RANKS = [1, 2, 5]
SUBSPACE_TOL = 1e-6  # head_subspaces takes float32 weights' Grams in float32 (factored.head_subspaces): ~1e-7 off


@pytest.fixture(scope="module")
def W_all() -> torch.Tensor:
    """Random float32 `W_all (3, 4, 4, 32, 8)`, like weights taken from a model."""
    return torch.randn(N_LAYER, N_HEAD, 4, D_MODEL, D_HEAD, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test created."""
    yield
    plt.close("all")


def match(W: torch.Tensor, IH_list=None, Shifting_list=None, ranks=(2, 3), **options) -> SubspaceMatching:
    """`match_subspaces` on subspaces computed from `W` up to the largest rank (d_head when ranks are empty)."""
    subspaces = head_subspaces(W, max(ranks) if ranks and max(ranks) <= W.shape[-1] else None)
    return match_subspaces(subspaces, IH_list=IH_list, Shifting_list=Shifting_list, ranks=ranks, **options)


def dense_basis(W_all: torch.Tensor, head: list, side: str, rank: int) -> np.ndarray:
    """Slow reference: top-r key (right of W_qk) or output (left of W_ov) vectors from a dense SVD."""
    if side == "key":
        return np.linalg.svd(qk(W_all.double(), *head).numpy())[2][:rank].T
    return np.linalg.svd(ov(W_all.double(), *head).numpy())[0][:, :rank]


def dense_scores(basis0: np.ndarray, basis1: np.ndarray) -> tuple[float, float]:
    """Slow reference: (largest, mean) from the singular values of `basis0^T basis1`."""
    s = np.linalg.svd(basis0.T @ basis1, compute_uv=False)
    return s[0], math.sqrt(np.mean(s**2))


def dense_zscore(W_all: torch.Tensor, ih: list, sh: list) -> float:
    """Slow reference: the DESIGN definition on the dense `d x d` product `W_qk(ih) @ W_ov(sh)`."""
    M = (qk(W_all.double(), *ih) @ ov(W_all.double(), *sh)).numpy()
    return (np.mean(np.diag(M)) - M.mean()) / M.std()


# ---------------------------------------------------------------- matching scores


@pytest.mark.parametrize("method", ["largest", "mean"])
def test_a_subspace_matched_with_itself_scores_one_and_with_an_orthogonal_one_zero(method):
    """Identical subspaces score 1 (also in another basis of the same span); orthogonal ones score 0."""
    basis = torch.linalg.qr(torch.randn(20, 4, dtype=torch.float64)).Q
    rotation = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64)).Q
    complement = torch.linalg.qr(torch.eye(20, dtype=torch.float64) - basis @ basis.T).Q[:, :4]
    assert subspace_match_score(basis, basis, method).item() == pytest.approx(1.0, abs=1e-12)
    assert subspace_match_score(basis, basis @ rotation, method).item() == pytest.approx(1.0, abs=1e-12)
    assert subspace_match_score(basis, complement, method).item() == pytest.approx(0.0, abs=1e-7)


def test_scores_follow_the_principal_angles():
    """Bases at principal angles theta, phi: largest = max cosine, mean = sqrt(mean of squared cosines)."""
    theta, phi = 0.3, 1.1
    eye = torch.eye(6, dtype=torch.float64)
    A0 = eye[:, :2]
    first = math.cos(theta) * eye[0] + math.sin(theta) * eye[2]
    second = math.cos(phi) * eye[1] + math.sin(phi) * eye[3]
    A1 = torch.stack([first, second], 1)
    assert subspace_match_score(A0, A1, "largest").item() == pytest.approx(math.cos(theta))
    expected_mean = math.sqrt((math.cos(theta) ** 2 + math.cos(phi) ** 2) / 2)
    assert subspace_match_score(A0, A1, "mean").item() == pytest.approx(expected_mean)


@pytest.mark.parametrize(
    ("ih", "sh", "sides"),
    [(IH, None, ("key", "key")), (None, SH, ("output", "output")), (IH, SH, ("key", "output"))],
    ids=["IHxIH", "SHxSH", "IHxSH"],
)
def test_s_match_and_head_baseline_equal_per_pair_dense_svds(W_all, ih, sh, sides):
    """Factored scores of every listed pair and every random-head baseline pair equal a dense SVD per pair."""
    result = match(W_all, ih, sh, RANKS, num_samp=12, seed=3)
    rows, cols = result.row_heads, result.col_heads
    assert result.s_match.shape == (2, len(RANKS), len(rows), len(cols))
    for j, r in enumerate(RANKS):
        for a, row in enumerate(rows):
            for b, col in enumerate(cols):
                expected = dense_scores(dense_basis(W_all, row, sides[0], r), dense_basis(W_all, col, sides[1], r))
                np.testing.assert_allclose(result.s_match[:, j, a, b], expected, atol=SUBSPACE_TOL)
        for n, (h0, h1) in enumerate(result.head_baseline_pairs.tolist()):
            expected = dense_scores(dense_basis(W_all, h0, sides[0], r), dense_basis(W_all, h1, sides[1], r))
            np.testing.assert_allclose(result.head_baseline[:, j, n], expected, atol=SUBSPACE_TOL)


def test_ih_by_ih_is_symmetric_with_ones_on_the_diagonal(W_all):
    """IH x IH: s_match[m, r] is symmetric and each head matches itself with score 1."""
    s_match, _ = subspace_matching(W_all, None, IH_list=IH, ranks=RANKS, num_samp=5)
    np.testing.assert_allclose(s_match, s_match.swapaxes(-1, -2), atol=1e-12)
    np.testing.assert_allclose(np.diagonal(s_match, axis1=-2, axis2=-1), 1.0, atol=1e-12)


def test_seed_call_returns_the_seed_shapes_and_the_gaussian_baseline(W_all):
    """subspace_matching(W_all, None, ...) returns (M, R, K0, K1) scores and the (M, R, num_samp) Gaussian baseline."""
    s_match, match_baseline = subspace_matching(W_all, None, IH_list=IH, Shifting_list=SH[:2], ranks=RANKS, num_samp=7)
    result = match(W_all, IH, SH[:2], RANKS, num_samp=7)
    assert s_match.shape == (2, 3, 3, 2) and match_baseline.shape == (2, 3, 7)
    np.testing.assert_array_equal(s_match, result.s_match)
    np.testing.assert_array_equal(match_baseline, result.gaussian_baseline)


def test_gaussian_baseline_has_the_expected_mean_square_overlap():
    """Random r-dim subspaces of R^d: E[mean score^2] = r / d, and largest >= mean >= 0 in every sample."""
    d, ranks = 40, [1, 4]
    scores = gaussian_baseline(d, ranks, ("largest", "mean"), 2000, np.random.default_rng(0))
    for j, r in enumerate(ranks):
        assert np.mean(scores[1, j] ** 2) == pytest.approx(r / d, rel=0.1)
    assert (scores[0] >= scores[1] - 1e-12).all() and (scores >= 0).all() and (scores <= 1).all()


def test_head_baseline_pairs_avoid_heads_under_test_and_are_seeded():
    """Pairs are two distinct heads outside the lists; the same seed gives the same pairs; tiny pools fall back."""
    exclude = [[0, 0], [1, 2]]
    pairs, pool = draw_head_pairs((3, 4), exclude, 500, np.random.default_rng(1))
    flat = pairs[..., 0] * 4 + pairs[..., 1]
    assert pairs.shape == (500, 2, 2) and (flat[:, 0] != flat[:, 1]).all()
    assert not np.isin(flat, [0, 6]).any() and len(np.unique(flat)) == 10
    assert "10 heads outside the 2" in pool
    again, _ = draw_head_pairs((3, 4), exclude, 500, np.random.default_rng(1))
    np.testing.assert_array_equal(pairs, again)
    everything = [[l, h] for l in range(3) for h in range(4)]
    fallback, pool = draw_head_pairs((3, 4), everything[1:], 50, np.random.default_rng(1))
    assert pool.startswith("all 12 heads") and (fallback[:, 0] != fallback[:, 1]).any(-1).all()


def test_percentiles_count_the_baseline_at_or_below_each_score():
    """percentile_of gives 100 * fraction of baseline values <= score, broadcasting over leading dims."""
    baseline = np.array([[0.1, 0.2, 0.3, 0.4]])
    scores = np.array([[[0.05, 0.2], [0.35, 0.9]]])
    np.testing.assert_allclose(percentile_of(scores, baseline), [[[0.0, 50.0], [75.0, 100.0]]])


def test_subspaces_with_more_directions_give_the_same_scores_and_too_few_are_refused(W_all):
    """Bases are nested: subspaces kept to rank 8 give rank-5 scores equal to those kept to rank 5."""
    kept = match_subspaces(head_subspaces(W_all, 8), IH_list=IH, Shifting_list=SH, ranks=RANKS, num_samp=6)
    direct = match(W_all, IH, SH, RANKS, num_samp=6)
    np.testing.assert_allclose(kept.s_match, direct.s_match, atol=1e-12)
    with pytest.raises(IHLibError, match=r"rank=5 is out of range: choose 1\.\.2"):
        match_subspaces(head_subspaces(W_all, 2), IH_list=IH, ranks=RANKS)


def test_head_subspaces_are_computed_once_per_head_and_side(W_all):
    """Bases and singular values of every head, from one batched pass, equal dense SVDs; bad sides are refused."""
    subspaces = head_subspaces(W_all, 3)
    for layer, head in ([1, 2], [0, 0], [2, 3]):
        values = subspaces.values("output", [[layer, head]])[0].numpy()
        dense = np.linalg.svd(ov(W_all.double(), layer, head).numpy())
        np.testing.assert_allclose(values, dense[1][:3], rtol=SUBSPACE_TOL)
        basis = subspaces.bases("output", [[layer, head]])[0].numpy()
        np.testing.assert_allclose(np.abs(basis.T @ dense[0][:, :3]), np.eye(3), atol=SUBSPACE_TOL)
    with pytest.raises(IHLibError, match="choose 'key'"):
        subspaces.bases("query", [[0, 0]])


def test_summary_compares_listed_pairs_with_both_baselines(W_all):
    """summary() has one row per method and rank; IH x IH counts each unordered pair once."""
    result = match(W_all, IH, None, RANKS, num_samp=20)
    assert result.pair_scores().shape == (2, 3, 3)
    rows = result.summary()
    assert [(r["method"], r["rank"]) for r in rows] == [(m, k) for m in ("largest", "mean") for k in RANKS]
    first = rows[0]
    assert first["heads_mean"] == pytest.approx(result.head_baseline[0, 0].mean())
    assert first["listed_median"] == pytest.approx(np.median(result.pair_scores()[0, 0]))


# ---------------------------------------------------------------- diagonal z-scores


def test_diagonal_zscore_of_the_identity_is_known():
    """For I_d: mean diag 1, mean 1/d, std sqrt(1/d - 1/d^2); d = 5 gives z = 2."""
    assert diagonal_zscore(np.eye(5)).item() == pytest.approx(2.0)


def test_factored_zscores_equal_the_dense_definition(W_all):
    """qkov_zscore_grid and qkov_zscores equal the z-score of each dense W_qk(IH) @ W_ov(SH) (float64 dense).

    Float64 weights give float64 accuracy; the model's float32 weights are computed in float32 (within 1e-4).
    """
    expected = np.array([[dense_zscore(W_all, ih, sh) for sh in SH] for ih in IH])
    np.testing.assert_allclose(qkov_zscore_grid(W_all.double(), IH, SH), expected, atol=1e-10)
    np.testing.assert_allclose(qkov_zscores(W_all, IH, SH, num_samp=10).zscores, expected, rtol=1e-4, atol=1e-4)


def test_zscore_baseline_and_percentiles_equal_direct_computation(W_all):
    """Baseline z-scores equal dense ones for the drawn pairs; percentiles count baseline values at or below."""
    result = qkov_zscores(W_all.double(), IH, SH, num_samp=30, seed=2)
    drawn = [dense_zscore(W_all, a, b) for a, b in result.baseline_pairs.tolist()]
    np.testing.assert_allclose(result.baseline, drawn, atol=1e-10)
    expected = [[100 * np.mean(result.baseline <= z) for z in row] for row in result.zscores]
    np.testing.assert_allclose(result.percentiles, expected)
    assert result.composable.tolist() == [[True, True, True], [True, True, True], [True, False, True]]
    assert result.record()["top_pairs"][0]["z"] == pytest.approx(result.zscores.max())


def test_embedding_basis_is_the_sorted_eigenbasis_of_the_embedding_gram():
    """Eigenvalues descending; eigenvectors orthonormal and diagonalise W_E^T W_E."""
    W_E = torch.randn(50, 12, generator=torch.Generator().manual_seed(1))
    values, vectors = embedding_basis(W_E)
    gram = (W_E.double().T @ W_E.double()).numpy()
    assert (np.diff(values.numpy()) <= 0).all()
    np.testing.assert_allclose(vectors.numpy().T @ gram @ vectors.numpy(), np.diag(values.numpy()), atol=1e-9)


def test_qkov_blocks_equal_the_dense_matrix_in_both_bases(W_all):
    """Residual block = top-left of W_qkov; embedding block = top-left of E^T W_qkov E; z-scores match dense ones."""
    W_E = torch.randn(60, D_MODEL, generator=torch.Generator().manual_seed(2))
    result = qkov_blocks(W_all, IH, Shifting_list=SH, n_partners=1, W_E=W_E, block=10)
    _, vectors = embedding_basis(W_E)
    assert result.pairs == [[[2, 1], [0, 2]], [[2, 3], [0, 2]], [[1, 0], [0, 2]]]
    for p, (ih, sh) in enumerate(result.pairs):
        M = (qk(W_all.double(), *ih) @ ov(W_all.double(), *sh)).numpy()
        rotated = vectors.numpy().T @ M @ vectors.numpy()
        np.testing.assert_allclose(result.residual_blocks[p], M[:10, :10], atol=1e-10)
        np.testing.assert_allclose(result.embedding_blocks[p], rotated[:10, :10], atol=1e-10)
        assert result.residual_z[p] == pytest.approx(diagonal_zscore(M).item())
        assert result.embedding_z[p] == pytest.approx(diagonal_zscore(rotated).item())


def test_qkov_partners_without_shifting_list_are_the_best_earlier_heads(W_all):
    """No Shifting_list: each IH gets the earlier heads with the largest dense z-scores; layer-0 IHs are skipped."""
    result = qkov_matching(W_all, [[1, 0], [0, 3]], None, n_partners=2)
    z = {h: dense_zscore(W_all, [1, 0], [0, h]) for h in range(N_HEAD)}
    best = sorted(z, key=z.get, reverse=True)[:2]
    assert result.pairs == [[[1, 0], [0, best[0]]], [[1, 0], [0, best[1]]]]
    assert result.skipped == [[0, 3]]
    assert result.embedding_blocks is None and "pass W_E" in result.note


def test_qkov_runs_on_weights_of_a_model():
    """head_weights of a random GPT-2 feed qkov_matching with its own embedding (4 x 4 blocks)."""
    from conftest import random_gpt2

    model = random_gpt2(n_layer=2, n_head=2, n_embd=16, vocab=40)
    result = qkov_matching(head_weights(model), [[1, 0]], None, W_E=model.transformer.wte.weight, block=4)
    assert result.residual_blocks.shape == (2, 4, 4) and result.embedding_blocks.shape == (2, 4, 4)


# ---------------------------------------------------------------- files and figures


def test_computing_and_plotting_write_nothing(W_all, tmp_path, monkeypatch):
    """Computing and drawing write no file: only save_result (or a seed call with a save_dir) does."""
    monkeypatch.chdir(tmp_path)
    result = match(W_all, IH, SH, [2], num_samp=5)
    qkov_blocks(W_all, IH[:1], Shifting_list=SH[:1], n_partners=1, block=4)
    assert set(plot_subspace_matching(result)) == {"subspace_matching_largest", "subspace_matching_mean"}
    subspace_matching(W_all, None, IH_list=IH, ranks=[2], num_samp=5)
    assert list(tmp_path.iterdir()) == []


def test_save_dir_holds_figures_and_the_data_behind_them(W_all, tmp_path):
    """Each function writes its PNGs plus NPZ/JSON data whose numbers equal the returned ones."""
    matched = match(W_all, IH, None, [2, 5], methods=("mean",), num_samp=8)
    save_result(matched, tmp_path / "s", plot_subspace_matching(matched))
    zs = qkov_zscores(W_all, IH, SH, num_samp=20)
    figures = plot_qkov_zscores(zs)
    save_result(zs, tmp_path / "z", figures)
    qkov_matching(W_all, IH[:2], tmp_path / "q", Shifting_list=SH, n_partners=1, block=6)
    names = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert {"subspace_matching_mean.png", "subspace_matching.npz", "subspace_matching.json"} <= names
    assert {"qkov_zscores_heatmap.png", "qkov_zscores_hist.png", "qkov_zscores.npz", "qkov_zscores.json"} <= names
    assert {"qkov_residual.png", "qkov_matching.npz", "qkov_matching.json"} <= names
    saved = np.load(tmp_path / "s" / "subspace_matching.npz")
    np.testing.assert_array_equal(saved["head_baseline"], matched.head_baseline)
    record = json.loads((tmp_path / "s" / "subspace_matching.json").read_text())
    assert record["mode"] == "IH x IH" and record["ranks"] == [2, 5]
    np.testing.assert_array_equal(np.load(tmp_path / "z" / "qkov_zscores.npz")["zscores"], zs.zscores)
    assert figures["qkov_zscores_heatmap"].axes[0].get_title().startswith("Diagonal z-score")


# ---------------------------------------------------------------- chapter tables and verdicts


def zscore_result(zscores: list, composable: list, baseline: np.ndarray) -> QKOVZScores:
    """A QKOVZScores with chosen numbers: IHs in layer 2, SHs in layer 1 or 2 as `composable` says (1 row)."""
    shifting = [[1 if ok else 2, j] for j, ok in enumerate(composable)]
    return QKOVZScores(
        [[2, 0]],
        shifting,
        np.array([zscores]),
        np.array([composable]),
        baseline,
        np.zeros((baseline.size, 2, 2)),
        "",
        0,
    )


BASELINE_Z = np.linspace(-1.0, 1.0, 201)  # 5th pct -0.9, median 0, 95th pct 0.9


def test_listed_heads_table_shows_both_scores_and_the_ratio_to_the_uniform_baseline():
    """One row per listed head in list order; the ratio uses the head's own kind and the scores' own baseline."""
    scores = HeadScores(induction=np.array([[0.1, 0.6], [0.8, 0.2]]), shifting=np.array([[0.5, 0.1], [0.3, 0.05]]))
    uniform = scores.uniform
    table = listed_heads_table(scores, [[1, 0], [0, 1]], [[0, 0]])
    assert table["head"].tolist() == ["L1H0", "L0H1", "L0H0"]
    assert table.loc[("IH_list", 1), "× uniform baseline (own kind)"] == pytest.approx(
        0.8 / uniform["induction"], abs=1e-3
    )
    assert table.loc[("Shifting_list", 1), "× uniform baseline (own kind)"] == pytest.approx(
        0.5 / uniform["shifting"], abs=1e-3
    )
    assert table.loc[("Shifting_list", 1), "induction score"] == pytest.approx(0.1)


def test_zscore_table_and_overview_summarise_the_result(W_all):
    """Pairs sorted by z with their percentiles; the overview's medians and counts equal direct computation."""
    result = qkov_zscores(W_all, IH, SH, num_samp=40, seed=1)
    table = zscore_table(result)
    assert len(table) == 9 and table["z"].is_monotonic_decreasing
    best = np.unravel_index(np.argmax(result.zscores), result.zscores.shape)
    assert table.loc[1, "percentile among random pairs"] == pytest.approx(result.percentiles[best], abs=0.01)
    assert len(zscore_table(result, top=4)) == 4
    overview = zscore_overview(result)
    composable = result.zscores[result.composable]
    # 6 unlisted heads (2 per layer) form 4 + 8 = 12 composable pairs: all of them, fewer than num_samp
    assert overview["n"].tolist() == [composable.size, 9, 12]
    assert overview["median"].iloc[0] == pytest.approx(np.median(composable), abs=0.005)
    assert overview["95th pct"].iloc[2] == pytest.approx(np.percentile(result.baseline, 95), abs=0.005)


def test_binomial_tail_equals_direct_sums():
    """P(Binomial(n, p) >= k): 1 at k = 0, p^n at k = n, and 1 - (1-p)^n at k = 1."""
    assert binomial_tail(0, 7, 0.05) == pytest.approx(1.0)
    assert binomial_tail(7, 7, 0.05) == pytest.approx(0.05**7)
    assert binomial_tail(1, 20, 0.05) == pytest.approx(1 - 0.95**20)


def matching_result(mode: str, listed: float, heads: float, gauss: float, ranks: tuple = (2, 5)) -> SubspaceMatching:
    """A SubspaceMatching whose listed pairs all score `listed` and whose baselines spread around `heads`, `gauss`."""
    n_rows = 3
    spread = np.linspace(-0.05, 0.05, 101)
    shape = (2, len(ranks))
    return SubspaceMatching(
        mode,
        [[1, h] for h in range(n_rows)],
        [[0, h] for h in range(n_rows)] if mode == "IH x SH" else [[1, h] for h in range(n_rows)],
        list(ranks),
        ("largest", "mean"),
        np.full(shape + (n_rows, n_rows), listed),
        np.broadcast_to(gauss + spread, shape + spread.shape).copy(),
        np.broadcast_to(heads + spread, shape + spread.shape).copy(),
        np.zeros((spread.size, 2, 2)),
        "",
        0,
    )


def test_matching_table_reads_each_row_against_both_baselines():
    """Listed median above both 95th percentiles, above the Gaussian only, or within the baselines."""
    results = [
        matching_result("IH x IH", 0.9, 0.5, 0.2),
        matching_result("SH x SH", 0.4, 0.5, 0.2),
        matching_result("IH x SH", 0.1, 0.5, 0.2),
    ]
    table = matching_table(results)
    assert len(table) == 3 * 2 * 2
    readings = table.groupby("comparison")["reading"].agg(set).to_dict()
    assert readings == {
        "IH x IH": {"above both baselines"},
        "SH x SH": {"above Gaussian only"},
        "IH x SH": {"within the baselines"},
    }
    indexed = table.set_index(["score", "rank"], append=True)
    assert indexed.loc[("IH x IH", "largest", 2), "percentile in random heads"] == pytest.approx(100.0)
    assert indexed.loc[("IH x IH", "mean", 5), "random heads 95th"] == pytest.approx(0.545, abs=1e-3)


def test_energy_profile_is_the_cumulative_share_of_squared_singular_values(W_all):
    """Column r-1 equals the top-r share of |W_qk|_F^2 from a dense SVD; truncated subspaces are refused."""
    profile = energy_profile(head_subspaces(W_all), "key", [[2, 1]])
    s = np.linalg.svd(qk(W_all.double(), 2, 1).numpy(), compute_uv=False)
    np.testing.assert_allclose(profile[0], np.cumsum(s[:D_HEAD] ** 2) / np.sum(s**2), atol=SUBSPACE_TOL)
    with pytest.raises(IHLibError, match=r"head_subspaces\(W_all\)"):
        head_spectra(head_subspaces(W_all, 3), IH, SH)


def test_chapter_figures_are_titled_and_saved_with_their_data(W_all, tmp_path):
    """head_spectra saves its PNG and NPZ; the overview has one panel per comparison and method, ranks on x."""
    spectra = head_spectra(head_subspaces(W_all), IH, SH, ranks=[2, 5])
    figures = plot_energy_profiles(spectra)
    save_result(spectra, tmp_path, figures)
    figure = figures["energy_profiles"]
    assert {"energy_profiles.png", "energy_profiles.npz"} <= {p.name for p in tmp_path.iterdir()}
    assert np.load(tmp_path / "energy_profiles.npz")["key_all_heads"].shape == (N_LAYER * N_HEAD, D_HEAD)
    assert all(ax.get_xlabel() and ax.get_title() for ax in figure.axes)
    results = [match(W_all, IH, sh, RANKS, num_samp=5) for sh in (None, SH)]
    overview = plot_matching_overview(results)["matching_overview"]
    assert len(overview.axes) == 4 and [t.get_text() for t in overview.axes[0].get_xticklabels()] == ["1", "2", "5"]


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda W: match(W, IH, None, [9]), r"rank=9 is out of range: choose 1\.\.8"),
        (lambda W: match(W, [[3, 0]], None, [2]), r"layers 0\.\.2"),
        (lambda W: match(W, [[0, 4]], None, [2]), r"heads 0\.\.3"),
        (lambda W: match(W, [], None, [2]), "IH_list is empty"),
        (lambda W: match(W, None, None, [2]), "Pass IH_list, Shifting_list or both"),
        (lambda W: match(W, IH, None, [2], methods=("max",)), "non-empty list from \\('largest', 'mean'\\)"),
        (lambda W: match(W, IH, None, []), "ranks is empty"),
        (lambda W: match(W, IH, None, [2], num_samp=0), "num_samp=0 is out of range: choose at least 1"),
        (lambda W: match(W[0], IH, None, [2]), "W_all must have shape"),
        (lambda W: qkov_zscores(W, IH, []), "Shifting_list is empty"),
        (lambda W: qkov_blocks(W, [[0, 1]]), "earlier layer"),
        (lambda W: qkov_blocks(W, IH, W_E=torch.zeros(5, 7)), "W_E has d_model 7"),
    ],
)
def test_bad_input_raises_naming_what_is_allowed(W_all, call, message):
    """Out-of-range ranks and heads, empty lists, unknown methods and wrong shapes raise IHLibError."""
    with pytest.raises(IHLibError, match=message):
        call(W_all)
