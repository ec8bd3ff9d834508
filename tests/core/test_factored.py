"""Factored thin SVDs of `A B^T` agree with a dense `numpy.linalg.svd` of the full product, batched and one-sided."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.core.factored import (
    ThinSVD,
    cholesky_r,
    head_subspaces,
    ov_svd,
    qk_svd,
    right_singular_subspace,
    single_threaded,
    thin_qr,
    thin_svd_product,
)
from ihlib.model.errors import IHLibError
from ihlib.model.weights import K, O, ov, qk

FLOAT32_SUBSPACE_TOL = 1e-6  # head_subspaces from float32 weights: their Grams in float32, everything else float64


def random_w_all(n_layer: int = 2, n_head: int = 3, d_model: int = 24, d_head: int = 6, seed: int = 0) -> torch.Tensor:
    """Random `W_all (L, H, 4, d, k)` in float64."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_layer, n_head, 4, d_model, d_head, generator=generator, dtype=torch.float64)


def projector(basis: np.ndarray) -> np.ndarray:
    """Orthogonal projector onto the column span of an orthonormal `basis (d, r)`."""
    return basis @ basis.T


def assert_matches_dense(svd: ThinSVD, dense: np.ndarray, rank: int) -> None:
    """Singular values equal; top-r left/right subspaces equal (via projectors); factors orthonormal."""
    U, S, Vt = np.linalg.svd(dense)
    np.testing.assert_allclose(svd.S.numpy(), S[:rank], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(projector(svd.U.numpy()), projector(U[:, :rank]), atol=1e-9)
    np.testing.assert_allclose(projector(svd.V.numpy()), projector(Vt[:rank].T), atol=1e-9)
    np.testing.assert_allclose(svd.U.numpy().T @ svd.U.numpy(), np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(svd.V.numpy().T @ svd.V.numpy(), np.eye(rank), atol=1e-10)


def test_thin_svd_of_a_product_equals_the_dense_svd():
    """Full thin SVD: singular values, subspaces and the reconstruction `U S V^T = A B^T` match the dense SVD."""
    generator = torch.Generator().manual_seed(1)
    A = torch.randn(30, 5, generator=generator, dtype=torch.float64)
    B = torch.randn(20, 5, generator=generator, dtype=torch.float64)
    svd = thin_svd_product(A, B)
    dense = (A @ B.T).numpy()
    assert svd.rank == 5 and svd.U.shape == (30, 5) and svd.V.shape == (20, 5)
    assert_matches_dense(svd, dense, 5)
    np.testing.assert_allclose(svd.dense().numpy(), dense, atol=1e-10)


def test_truncated_svd_keeps_the_top_triplets():
    """`rank=r` and `.truncate(r)` both give the top r triplets of the dense SVD."""
    generator = torch.Generator().manual_seed(2)
    A = torch.randn(25, 6, generator=generator, dtype=torch.float64)
    B = torch.randn(25, 6, generator=generator, dtype=torch.float64)
    dense = (A @ B.T).numpy()
    assert_matches_dense(thin_svd_product(A, B, rank=3), dense, 3)
    assert_matches_dense(thin_svd_product(A, B).truncate(3), dense, 3)


def test_every_head_of_a_batch_matches_its_dense_qk_and_ov_svd():
    """qk_svd / ov_svd over `(L, H)` heads equal per-head dense SVDs of `W_q W_k^T` and `W_o W_v^T`."""
    W_all = random_w_all()
    qk_all, ov_all = qk_svd(W_all), ov_svd(W_all)
    assert qk_all.U.shape == (2, 3, 24, 6) and qk_all.S.shape == (2, 3, 6)
    for layer in range(2):
        for head in range(3):
            for svd, dense in ((qk_all, qk(W_all, layer, head)), (ov_all, ov(W_all, layer, head))):
                one = ThinSVD(svd.U[layer, head], svd.S[layer, head], svd.V[layer, head])
                assert_matches_dense(one, dense.numpy(), 6)


def test_one_sided_subspace_matches_the_dense_right_singular_vectors():
    """right_singular_subspace gives the dense SVD's top singular values and right singular subspaces, batched."""
    W_all = random_w_all(seed=3)
    S, V = right_singular_subspace(W_all[:, :, 0], W_all[:, :, 1], rank=4)
    assert S.shape == (2, 3, 4) and V.shape == (2, 3, 24, 4)
    for layer in range(2):
        for head in range(3):
            _, s, vt = np.linalg.svd(qk(W_all, layer, head).numpy())
            np.testing.assert_allclose(S[layer, head].numpy(), s[:4], rtol=1e-9)
            for r in (1, 2, 4):  # nested: the first r columns span the top-r subspace
                np.testing.assert_allclose(projector(V[layer, head, :, :r].numpy()), projector(vt[:r].T), atol=1e-8)


def assert_head_subspaces_match_dense(W_all: torch.Tensor, rank: int, tol: float) -> None:
    """Every head's key / output bases (nested, per rank) and singular values equal dense float64 SVDs within `tol`."""
    subspaces = head_subspaces(W_all, rank)
    W = W_all.double()
    for layer in range(W.shape[0]):
        for head in range(W.shape[1]):
            _, s_qk, vt_qk = np.linalg.svd(qk(W, layer, head).numpy())
            u_ov, s_ov, _ = np.linalg.svd(ov(W, layer, head).numpy())
            for side, s, basis in (("key", s_qk, vt_qk.T), ("output", s_ov, u_ov)):
                values = subspaces.values(side, [[layer, head]])[0].numpy()
                np.testing.assert_allclose(values, s[:rank], rtol=tol)
                ours = subspaces.bases(side, [[layer, head]])[0].numpy()
                np.testing.assert_allclose(ours.T @ ours, np.eye(rank), atol=1e-12)
                for r in range(1, rank + 1):
                    np.testing.assert_allclose(projector(ours[:, :r]), projector(basis[:, :r]), atol=tol)


def test_head_subspaces_of_float64_weights_equal_dense_svds():
    """From float64 weights, the batched pass agrees with a dense SVD of every head's `W_qk` and `W_ov` to 1e-9."""
    assert_head_subspaces_match_dense(random_w_all(seed=7), 4, 1e-9)


def test_head_subspaces_of_float32_weights_equal_dense_svds_to_the_stated_tolerance():
    """From float32 weights (Grams in float32), bases and values agree with float64 dense SVDs to 1e-6."""
    W_all = 0.02 * random_w_all(n_layer=2, n_head=2, d_model=96, d_head=8, seed=8).float()
    assert_head_subspaces_match_dense(W_all, 5, FLOAT32_SUBSPACE_TOL)


def test_head_subspaces_keep_the_top_directions_of_ill_conditioned_float32_factors():
    """Key and output factors of condition number 1e3 (float32): the top 4 directions still agree to 1e-6."""
    W_all = random_w_all(n_layer=1, n_head=2, d_model=64, d_head=8, seed=9)
    W_all[:, :, [K, O]] *= torch.logspace(0, -3, 8, dtype=torch.float64)
    assert_head_subspaces_match_dense(W_all.float(), 4, FLOAT32_SUBSPACE_TOL)


def test_head_subspaces_of_a_rank_deficient_head_take_the_householder_path():
    """A head whose `W_k` has a zero column makes the Cholesky fail: the Householder path keeps every head exact."""
    W_all = random_w_all(seed=10).float()
    W_all[1, 2, K, :, 4] = 0.0
    assert cholesky_r(W_all[1, 2, K].mT @ W_all[1, 2, K]) is None
    assert_head_subspaces_match_dense(W_all, 3, FLOAT32_SUBSPACE_TOL)


def test_rank_deficient_factors_fall_back_to_householder_and_stay_exact():
    """A factor with a zero column makes CholeskyQR fail: the Householder path still reproduces the product."""
    generator = torch.Generator().manual_seed(4)
    A = torch.randn(20, 4, generator=generator, dtype=torch.float64)
    B = torch.randn(20, 4, generator=generator, dtype=torch.float64)
    B[:, 2] = 0.0
    assert thin_qr(B).Q is not None
    assert thin_qr(A).Q is None
    svd = thin_svd_product(A, B)
    np.testing.assert_allclose(svd.dense().numpy(), (A @ B.T).numpy(), atol=1e-10)
    assert svd.S[-1].item() == pytest.approx(0.0, abs=1e-10)
    assert_matches_dense(svd.truncate(3), (A @ B.T).numpy(), 3)


def test_wide_factors_use_householder_and_match_the_dense_svd():
    """With more columns than rows (`k > m`), the thin QR is Householder and the SVD is still exact."""
    generator = torch.Generator().manual_seed(5)
    A = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    B = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    svd = thin_svd_product(A, B)
    assert svd.rank == 4
    assert_matches_dense(svd, (A @ B.T).numpy(), 4)


def test_thin_qr_is_a_qr():
    """`Q R = A`, `Q^T Q = I` and `R` upper triangular for the CholeskyQR path."""
    A = torch.randn(40, 7, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    qr = thin_qr(A)
    Q = qr.apply_q(torch.eye(7, dtype=torch.float64))
    np.testing.assert_allclose((Q @ qr.R).numpy(), A.numpy(), atol=1e-12)
    np.testing.assert_allclose((Q.T @ Q).numpy(), np.eye(7), atol=1e-12)
    assert torch.equal(qr.R, torch.triu(qr.R))


def test_single_threaded_restores_the_thread_count():
    """Inside the block torch runs on one thread; afterwards the previous count is back, also after an error."""
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), single_threaded():
        assert torch.get_num_threads() == 1
        raise RuntimeError("escape")
    assert torch.get_num_threads() == before


def test_bad_input_raises_with_the_allowed_range():
    """Mismatched factors and ranks above the head dimension raise IHLibError naming the range."""
    A = torch.randn(10, 3, dtype=torch.float64)
    with pytest.raises(IHLibError, match="same k"):
        thin_svd_product(A, torch.randn(10, 4, dtype=torch.float64))
    with pytest.raises(IHLibError, match=r"1\.\.3"):
        thin_svd_product(A, A, rank=4)
    with pytest.raises(IHLibError, match=r"1\.\.6"):
        qk_svd(random_w_all(), rank=7)
    with pytest.raises(IHLibError, match="W_all must have shape"):
        ov_svd(torch.zeros(2, 3, 24, 6))
