"""Thin SVDs of low-rank products `A @ B^T` kept in factored form, batched over leading (head) dimensions.

`A` is `(..., m, k)`, `B` is `(..., n, k)`; the product `(m, n)` is never formed. With thin QRs
`A = Q_a R_a` and `B = Q_b R_b`, `A B^T = Q_a (R_a R_b^T) Q_b^T`, so the SVD of the small core
`R_a R_b^T` gives the SVD of the product: `U = Q_a U_c`, `V = Q_b V_c`, same singular values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_heads
from ihlib.model.weights import K, O, Q, V, check_w_all

CHOLESKY_MIN_DIAG_RATIO = 1e-4  # below this min/max of diag(R), CholeskyQR loses orthogonality: use Householder


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block (or decorated function), then restore the thread count.

    The factored algebra is many small batched operations (`k x k` LAPACK calls, thin products): threads
    gain little there, and on shared CPUs every operation's thread barrier can stall for a scheduler
    slice (40-180x slowdowns measured on 2 busy cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class ThinSVD:
    """Top singular triplets of products `A B^T`: `U (..., m, r)`, `S (..., r)` descending, `V (..., n, r)`."""

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor

    @property
    def rank(self) -> int:
        """Number of singular triplets kept."""
        return int(self.S.shape[-1])

    def dense(self) -> torch.Tensor:
        """Return `U diag(S) V^T`, `(..., m, n)`: the (truncated) product, for checks on small shapes."""
        return (self.U * self.S.unsqueeze(-2)) @ self.V.mT

    def truncate(self, rank: int) -> ThinSVD:
        """Return the top `rank` triplets."""
        check_rank(rank, self.rank)
        return ThinSVD(self.U[..., :rank], self.S[..., :rank], self.V[..., :rank])


@dataclass(frozen=True)
class FactoredQR:
    """Thin QR `A = Q R` of a batch `A (..., m, k)`; `Q` is kept implicit (`A R^{-1}`) unless Householder was needed."""

    A: torch.Tensor
    R: torch.Tensor
    Q: torch.Tensor | None

    def apply_q(self, X: torch.Tensor) -> torch.Tensor:
        """Return `Q @ X` for `X (..., p, r)` without forming `Q` when it is implicit."""
        if self.Q is not None:
            return self.Q @ X
        return self.A @ torch.linalg.solve_triangular(self.R, X, upper=True)


@single_threaded()
def thin_qr(A: torch.Tensor) -> FactoredQR:
    """Thin QR of a batch `A (..., m, k)`: CholeskyQR (`R` from the Gram `A^T A`) if well conditioned, else Householder.

    CholeskyQR runs at matrix-product speed; Householder QR handles rank-deficient or
    ill-conditioned factors (and `k > m`), where `R` is `(..., min(m, k), k)`.
    """
    m, k = A.shape[-2:]
    R = cholesky_r(A.mT @ A) if k <= m else None
    if R is not None:
        return FactoredQR(A, R, None)
    Q_h, R_h = torch.linalg.qr(A, mode="reduced")
    return FactoredQR(A, R_h, Q_h)


def cholesky_r(gram: torch.Tensor) -> torch.Tensor | None:
    """Upper `R (..., k, k)` with `R^T R = gram`, or None if a Cholesky fails or is ill-conditioned (see thin_qr)."""
    L, info = torch.linalg.cholesky_ex(gram)
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    top = diag.amax(-1)
    if bool((info == 0).all() and (top > 0).all() and (diag.amin(-1) >= CHOLESKY_MIN_DIAG_RATIO * top).all()):
        return L.mT
    return None


@single_threaded()
def thin_svd_product(A: torch.Tensor, B: torch.Tensor, rank: int | None = None) -> ThinSVD:
    """Thin SVD of `A @ B^T` for batches `A (..., m, k)`, `B (..., n, k)`, keeping the top `rank` triplets.

    QR of both factors, SVD of the `R_a R_b^T` core; cost O((m + n) k^2) per product instead of O(m n min(m, n)).
    """
    if A.ndim < 2 or B.ndim < 2 or A.shape[-1] != B.shape[-1] or A.shape[:-2] != B.shape[:-2]:
        raise IHLibError(
            f"Factors must be (..., m, k) and (..., n, k) with the same k and batch shape; "
            f"got {tuple(A.shape)} and {tuple(B.shape)}."
        )
    qr_a, qr_b = thin_qr(A), thin_qr(B)
    U_c, S, V_ch = torch.linalg.svd(qr_a.R @ qr_b.R.mT, full_matrices=False)
    rank = S.shape[-1] if rank is None else check_rank(rank, S.shape[-1])
    return ThinSVD(qr_a.apply_q(U_c[..., :rank]), S[..., :rank], qr_b.apply_q(V_ch.mT[..., :rank]))


@single_threaded()
def right_singular_subspace(A: torch.Tensor, B: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top `rank` singular values `(..., rank)` and right singular vectors `(..., n, rank)` of `A @ B^T`.

    One-sided and cheaper than `thin_svd_product`: QR of `B` only, the Gram `A^T A`, and a symmetric
    eigendecomposition of the core's Gram `R_b (A^T A) R_b^T` (whose eigenvectors are the core's right
    singular vectors). Accurate for the leading directions, the ones kept.
    """
    if A.shape[-1] != B.shape[-1] or A.shape[:-2] != B.shape[:-2]:
        raise IHLibError(f"Factors must be (..., m, k) and (..., n, k); got {tuple(A.shape)} and {tuple(B.shape)}.")
    qr_b = thin_qr(B)
    values, vectors = torch.linalg.eigh(qr_b.R @ (A.mT @ A) @ qr_b.R.mT)
    rank = check_rank(rank, values.shape[-1])
    top = values.flip(-1)[..., :rank].clamp_min(0.0).sqrt()
    return top, qr_b.apply_q(vectors.flip(-1)[..., :rank])


def check_rank(rank: int, max_rank: int) -> int:
    """Return `rank` as int, or raise naming the allowed range `1..max_rank`."""
    if not 1 <= int(rank) <= max_rank:
        raise IHLibError(f"rank={rank} is out of range: choose 1..{max_rank} (at most the head dimension).")
    return int(rank)


def qk_svd(W_all: torch.Tensor, rank: int | None = None) -> ThinSVD:
    """Thin SVD of `W_qk = W_q W_k^T` for every head, float64: `U (L, H, d, r)` query side, `V` key side."""
    check_w_all(W_all)
    W = W_all.double()
    return thin_svd_product(W[:, :, Q], W[:, :, K], rank)


def ov_svd(W_all: torch.Tensor, rank: int | None = None) -> ThinSVD:
    """Thin SVD of `W_ov = W_o W_v^T` for every head, float64: `U (L, H, d, r)` output side, `V` input side."""
    check_w_all(W_all)
    W = W_all.double()
    return thin_svd_product(W[:, :, O], W[:, :, V], rank)


SIDE_FACTORS = {"key": (Q, K), "output": (V, O)}  # right singular vectors of W_q W_k^T and of W_v W_o^T = W_ov^T


@dataclass(frozen=True)
class HeadSubspaces:
    """Top-`max_rank` singular bases of every head, CPU float64: `bases[side] (L, H, d, r)`, `values[side] (L, H, r)`.

    Key side: right singular vectors of `W_qk = W_q W_k^T`; output side: left singular vectors of
    `W_ov = W_o W_v^T` (the right ones of `W_v W_o^T`). Singular values descending.
    """

    bases_by_side: dict[str, torch.Tensor]
    values_by_side: dict[str, torch.Tensor]
    d_head: int

    @property
    def shape(self) -> tuple[int, int]:
        """`(n_layer, n_head)` of the model the subspaces come from."""
        return tuple(self.bases_by_side["key"].shape[:2])

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.bases_by_side["key"].shape[2])

    @property
    def max_rank(self) -> int:
        """Number of singular directions kept per head."""
        return int(self.bases_by_side["key"].shape[3])

    def bases(self, side: str, heads: list | np.ndarray) -> torch.Tensor:
        """Return the `(n, d_model, max_rank)` bases of `heads` (`[layer, head]` rows) on `side` ("key" or "output")."""
        layers, cols = self._index(side, heads)
        return self.bases_by_side[side][layers, cols]

    def values(self, side: str, heads: list | np.ndarray) -> torch.Tensor:
        """Return the top `(n, max_rank)` singular values of `W_qk` ("key") or `W_ov` ("output") of `heads`."""
        layers, cols = self._index(side, heads)
        return self.values_by_side[side][layers, cols]

    def _index(self, side: str, heads: list | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the `(layers, heads)` index tensors of `heads` `(n, 2)`; raise for an unknown side."""
        if side not in SIDE_FACTORS:
            raise IHLibError(f"Unknown side {side!r}: choose 'key' (W_qk) or 'output' (W_ov).")
        heads = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
        return torch.from_numpy(heads[:, 0]), torch.from_numpy(heads[:, 1])


FIRST_FACTORS, SECOND_FACTORS = slice(Q, None, 2), slice(K, None, 2)  # views [W_q, W_v], [W_k, W_o]: SIDE_FACTORS


@torch.no_grad()
@single_threaded()
def head_subspaces(W_all: torch.Tensor, max_rank: int | None = None) -> HeadSubspaces:
    """Key (`W_qk`) and output (`W_ov`) subspaces of every head up to `max_rank` (default d_head): one batched pass.

    For both sides of all heads at once (`A B^T` = `W_q W_k^T` or `W_v W_o^T`, right singular vectors wanted):
    the only passes over the `d_model`-long factors run on `W_all`'s device and in its dtype: one batched
    product for the Gram matrices `W^T W` of the four factors, and the bases `B Y` at the end. Everything else is
    float64 on the CPU, on `d_head x d_head` cores: Cholesky `B^T B = R^T R`, eigendecomposition of
    `R (A^T A) R^T`, `Y = R^{-1} (top eigenvectors)`, and a re-orthonormalisation of the bases. From float32
    weights, bases and singular values agree with float64 dense SVDs to about 1e-6 (tests; also for factors of
    condition number 1e3), near the weights' own precision; float64 weights give float64 accuracy. Rank-deficient
    or ill-conditioned factors (as `thin_qr` judges them) take the float64 path of `right_singular_subspace`.
    Results are float64 CPU tensors.
    """
    check_w_all(W_all)
    rank = W_all.shape[-1] if max_rank is None else check_rank(max_rank, W_all.shape[-1])
    W = W_all.detach() if torch.finfo(W_all.dtype).bits >= 32 else W_all.detach().float()  # half: Grams in float32
    grams = (W.mT @ W).cpu().double()  # (L, H, 4, k, k)
    R = cholesky_r(grams[:, :, SECOND_FACTORS])  # (L, H, 2, k, k) or None
    if R is None:
        return _float64_head_subspaces(W.cpu(), rank)
    eigenvalues, eigenvectors = torch.linalg.eigh(R @ grams[:, :, FIRST_FACTORS] @ R.mT)
    values = eigenvalues.flip(-1)[..., :rank].clamp_min(0.0).sqrt()  # (L, H, 2, r)
    Y = torch.linalg.solve_triangular(R, eigenvectors.flip(-1)[..., :rank], upper=True).to(W.device, W.dtype)
    bases = {  # per side: W[:, :, K] flattens to one batch stride, the (L, H, 2) view would be copied
        side: orthonormalise((W[:, :, second] @ Y[:, :, i]).cpu().double())  # (L, H, d_model, r)
        for i, (side, (_, second)) in enumerate(SIDE_FACTORS.items())
    }
    return HeadSubspaces(bases, {side: values[:, :, i] for i, side in enumerate(SIDE_FACTORS)}, int(W_all.shape[-1]))


def orthonormalise(U: torch.Tensor) -> torch.Tensor:
    """Return `U R^{-1}` with `U^T U = R^T R` (CholeskyQR) for nearly orthonormal `U (..., d, r)`: same nested spans."""
    R = torch.linalg.cholesky(U.mT @ U).mT
    return torch.linalg.solve_triangular(R, U, upper=True, left=False)


def _float64_head_subspaces(W: torch.Tensor, rank: int) -> HeadSubspaces:
    """`head_subspaces` in float64 through `right_singular_subspace` (Householder QR where needed), for any factors."""
    W = W.double()
    bases, values = {}, {}
    for side, (first, second) in SIDE_FACTORS.items():
        values[side], bases[side] = right_singular_subspace(W[:, :, first], W[:, :, second], rank)
    return HeadSubspaces(bases, values, int(W.shape[-1]))


@torch.no_grad()
@single_threaded()
def stacked_qk_svd(W_all: torch.Tensor, heads: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Return singular values `(m,)` and right singular vectors `(d_model, m)` of the stack `[W_qk(h) for h in heads]`.

    Factored and batched over heads: `W_q = Q R` gives `W_qk = Q (R W_k^T)` with orthonormal `Q`, so the stack
    has the singular values and right vectors of the small stack of `R W_k^T`; `m = min(d_model, K d_head)`.
    """
    check_w_all(W_all)
    heads = check_heads(heads, tuple(W_all.shape[:2]))
    layers, cols = np.asarray(heads).T
    W = W_all.detach()[layers, cols].cpu().double()  # (K, 4, d_model, d_head)
    blocks = torch.linalg.qr(W[:, Q])[1] @ W[:, K].mT  # (K, d_head, d_model)
    _, S, Vh = torch.linalg.svd(blocks.flatten(0, 1), full_matrices=False)
    return S, Vh.T


def random_orthonormal(rng: np.random.Generator, d: int, rank: int, n: int | None = None) -> torch.Tensor:
    """Uniformly random orthonormal bases `([n,] d, rank)`, float64: Householder QR of a seeded Gaussian matrix."""
    shape = (d, rank) if n is None else (n, d, rank)
    return torch.linalg.qr(torch.from_numpy(rng.standard_normal(shape)))[0]


def subspace_projector(V: torch.Tensor, *, project_out: bool) -> torch.Tensor:
    """Return `I - V V^T` (project the subspace out) or `V V^T` (keep only it), `(d_model, d_model)`."""
    P = V @ V.T
    return torch.eye(V.shape[0], dtype=V.dtype, device=V.device) - P if project_out else P


def principal_angles(A: torch.Tensor | np.ndarray, B: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Principal angles (radians, ascending, float64) between the column spans of `A (d, r0)` and `B (d, r1)`:
    `arccos` of the singular values of `Q_A^T Q_B` (thin QRs), `min(r0, r1)` of them; 0 for a shared direction."""
    bases = []
    for name, M in (("A", A), ("B", B)):
        M = torch.as_tensor(M, dtype=torch.float64)
        if M.ndim != 2 or M.shape[1] > M.shape[0]:
            raise IHLibError(f"{name} must be a (d, r) matrix with r <= d, got shape {tuple(M.shape)}.")
        Q, R = torch.linalg.qr(M)
        diag = R.diagonal().abs()
        if diag.min() <= 1e-10 * diag.max().clamp_min(1e-300):
            raise IHLibError(f"The columns of {name} are linearly dependent: pass a basis of the subspace.")
        bases.append(Q)
    if bases[0].shape[0] != bases[1].shape[0]:
        raise IHLibError(f"A and B must have the same number of rows, got {A.shape[0]} and {B.shape[0]}.")
    cosines = torch.linalg.svdvals(bases[0].mT @ bases[1]).clamp(0.0, 1.0)
    return torch.arccos(cosines)
