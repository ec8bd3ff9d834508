"""Pair statistics from per-head quantities (`circuits.pair_statistics`, `pair_grams`) against dense float64 ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.core import pair_grams
from ihlib.core.circuits import STATISTICS, composable_pairs, composition_scores, embedding_basis, pair_statistics
from ihlib.model.errors import IHLibError
from ihlib.model.weights import ov, qk

SHAPE = (3, 4)  # layers x heads
D_MODEL, D_HEAD, VOCAB = 24, 4, 30
ALL = tuple(STATISTICS)
QK_HEADS = [[2, 0], [1, 3], [2, 1], [0, 1], [2, 3], [1, 0], [2, 0]]
OV_HEADS = [[1, 0], [0, 2], [0, 0], [2, 2], [1, 1], [0, 3], [0, 2]]  # includes pairs that cannot compose


def weights(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random `W_all (3, 4, 4, 24, 4)` and `W_E (30, 24)` of `dtype`."""
    generator = torch.Generator().manual_seed(seed)
    W_all = torch.randn(*SHAPE, 4, D_MODEL, D_HEAD, generator=generator, dtype=torch.float64)
    W_E = torch.randn(VOCAB, D_MODEL, generator=generator, dtype=torch.float64) + 0.2
    return W_all.to(dtype), W_E.to(dtype)


def dense_zscore(M: np.ndarray) -> float:
    """The DESIGN definition on a dense `d x d` matrix: `(mean(diag M) - mean(M)) / std(M)`."""
    return float((np.mean(np.diag(M)) - M.mean()) / M.std())


def dense_statistics(W_all: torch.Tensor, W_E: torch.Tensor, receiver: list, sender: list) -> dict[str, float]:
    """Every statistic of one pair from the dense float64 `d x d` products (the slow obvious way)."""
    W, E = W_all.double(), W_E.double().numpy()
    W_qk, W_ov, W_ov_receiver = qk(W, *receiver).numpy(), ov(W, *sender).numpy(), ov(W, *receiver).numpy()
    M = W_qk @ W_ov
    basis = embedding_basis(E)[1].numpy()
    norm = np.linalg.norm
    return {
        "z": dense_zscore(M),
        "z_embedding": dense_zscore(basis.T @ M @ basis),
        "k_composition": norm(M) / (norm(W_qk) * norm(W_ov)),
        "token_wins": float(np.mean((E @ M @ E.T).argmax(1) == np.arange(len(E)))),
        "q_composition": norm(W_qk.T @ W_ov) / (norm(W_qk) * norm(W_ov)),
        "v_composition": norm(W_ov_receiver @ W_ov) / (norm(W_ov_receiver) * norm(W_ov)),
    }


def expected_columns(W_all: torch.Tensor, W_E: torch.Tensor) -> dict[str, np.ndarray]:
    """Dense statistics of every pair of `QK_HEADS x OV_HEADS`, one array per statistic."""
    rows = [dense_statistics(W_all, W_E, r, s) for r, s in zip(QK_HEADS, OV_HEADS, strict=True)]
    return {name: np.array([row[name] for row in rows]) for name in ALL}


@pytest.mark.parametrize("rows_per_block", [None, 1, 5])
def test_every_statistic_equals_the_dense_float64_one_on_float64_weights(monkeypatch, rows_per_block):
    """Float64 weights: each statistic within 1e-9 relative of the dense product's, whole or in row blocks."""
    if rows_per_block is not None:  # force row blocks of that height through the memory bound
        n_sides = 6 * 4 + 6 * 2  # unique receivers x products + unique senders x sides, as pair_products counts
        monkeypatch.setattr(pair_grams, "MEMORY_BYTES", rows_per_block * n_sides * D_MODEL * 8)
    W_all, W_E = weights(torch.float64)
    got = pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E, statistics=ALL)
    expected = expected_columns(W_all, W_E)
    for name in ALL:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_every_statistic_is_within_1e_4_of_the_dense_float64_one_on_float32_weights():
    """Float32 weights (the book's): computed in float32, each statistic within 1e-4 (relative, or of a z unit)."""
    W_all, W_E = weights(torch.float32, seed=1)
    got = pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E, statistics=ALL)
    expected = expected_columns(W_all, W_E)
    for name in ALL:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_default_statistics_are_claim_1s_and_embedding_ones_need_the_embedding():
    """Without `statistics`: z and K-composition, plus the embedding-basis ones with W_E; unknown names raise."""
    W_all, W_E = weights(torch.float64)
    assert list(pair_statistics(W_all, QK_HEADS, OV_HEADS)) == ["z", "k_composition"]
    assert list(pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E)) == [
        "z",
        "z_embedding",
        "k_composition",
        "token_wins",
    ]
    with pytest.raises(IHLibError, match="need W_E"):
        pair_statistics(W_all, QK_HEADS, OV_HEADS, statistics=("token_wins",))
    with pytest.raises(IHLibError, match="Unknown statistics"):
        pair_statistics(W_all, QK_HEADS, OV_HEADS, statistics=("w_composition",))
    assert pair_statistics(W_all, [], [])["z"].shape == (0,)


def test_a_rank_deficient_head_gets_the_dense_scores():
    """A head whose W_q has rank 1 (a Gram without Cholesky factor) still scores as the dense product does."""
    W_all, W_E = weights(torch.float64, seed=2)
    W_all[2, 0, 0] = torch.outer(W_all[2, 0, 0, :, 0], torch.ones(D_HEAD, dtype=torch.float64))
    got = pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E, statistics=ALL)
    expected = expected_columns(W_all, W_E)
    for name in ALL:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-8, atol=1e-10, err_msg=name)


def test_composition_grid_holds_every_composable_pair_and_nan_elsewhere():
    """`composition_scores`: grid `[receiver, sender]` equals `pair_statistics` on composable pairs, NaN elsewhere."""
    W_all, _ = weights(torch.float64, seed=3)
    result = composition_scores(W_all)
    receivers, senders = composable_pairs(SHAPE)
    assert len(receivers) == 4 * 4 * (1 + 2)  # layer 1 reads 4 heads, layer 2 reads 8
    values = pair_statistics(W_all, receivers, senders, statistics=("q_composition", "k_composition", "v_composition"))
    for kind in ("Q", "K", "V"):
        grid = result.scores[kind]
        assert grid.shape == SHAPE + SHAPE
        picked = [grid[r[0], r[1], s[0], s[1]] for r, s in zip(receivers, senders, strict=True)]
        np.testing.assert_allclose(picked, values[f"{kind.lower()}_composition"], rtol=1e-12)
        assert int(np.isfinite(grid).sum()) == len(receivers)
    assert result.record()["K"]["n_pairs"] == 48
    with pytest.raises(IHLibError, match="Unknown composition kinds"):
        composition_scores(W_all, kinds=("X",))


def test_statistics_create_every_tensor_on_the_cpu_whatever_the_default_device():
    """Under `torch.device("meta")` as default, every statistic still comes out as on plain CPU weights."""
    W_all, W_E = weights(torch.float32, seed=4)
    expected = pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E, statistics=ALL)
    with torch.device("meta"):
        got = pair_statistics(W_all, QK_HEADS, OV_HEADS, W_E=W_E, statistics=ALL)
    for name in ALL:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
