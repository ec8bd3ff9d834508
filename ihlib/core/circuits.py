"""The QK-OV circuit of a pair of heads, `W_qkov = W_qk(QK head) W_ov(OV head)`, in factored form, batched.

`W_qkov = A C B^T` with `A = W_q`, `C = W_k^T W_o`, `B = W_v` (`d x d_head`, `d_head x d_head`, `d x d_head`);
the `d x d` product is never formed. Statistics of a pair (`STATISTICS`): the diagonal z-score
`(mean(diag M) - mean(M)) / std(M)` (population std) in the residual basis and in the embedding basis; the
K-composition score of Elhage et al. (2021), `||W_qk W_ov||_F / (||W_qk||_F ||W_ov||_F)`; and the token-basis
rate: how often token t's own column wins row t of `W_E W_qk W_ov W_E^T` (query token t, source token s).
Layer norms and biases are left out.
"""

from __future__ import annotations

import numpy as np
import torch

from ihlib.core.factored import single_threaded
from ihlib.model.errors import IHLibError
from ihlib.model.weights import K, O, Q, V

Z_CHUNK = 64  # head pairs per batched z-score step
TOKEN_CHUNK = 1024  # query tokens per step of the token-basis circuit
MAX_TOKENS = 4096  # the token-basis rate uses at most this many tokens (a seeded sample of a larger vocabulary)
STATISTICS = {
    "z": "diagonal z-score (residual basis)",
    "z_embedding": "diagonal z-score (embedding basis, signs fixed)",
    "k_composition": "K-composition score (Elhage et al. 2021)",
    "token_wins": "token-basis rate: own token wins its row",
}


def diagonal_zscore(M: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return `(mean(diag M) - mean(M)) / std(M)` over the last two dims of square `M (..., d, d)`; population std."""
    M = torch.as_tensor(M, dtype=torch.float64)
    diag_mean = torch.diagonal(M, dim1=-2, dim2=-1).mean(-1)
    return (diag_mean - M.mean((-2, -1))) / M.std((-2, -1), correction=0)


def factored_diagonal_zscore(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Diagonal z-score of `M = A C B^T` for batches `A, B (..., d, k)`, `C (..., k, k)` without forming `M`.

    `trace M = <C, B^T A>`, `sum M = (A^T 1)^T C (B^T 1)`, `|M|_F^2 = trace(C^T A^T A C B^T B)`.
    """
    d = A.shape[-2]
    trace = (C * (B.mT @ A).mT).sum((-2, -1))
    total = ((A.sum(-2).unsqueeze(-2) @ C) * B.sum(-2).unsqueeze(-2)).sum((-2, -1))
    mean = total / d**2
    frob2 = factored_frobenius2(A, C, B)
    std = (frob2 / d**2 - mean**2).clamp_min(0).sqrt()
    return (trace / d - mean) / std


def factored_frobenius2(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """`||A C B^T||_F^2 = trace(C^T A^T A C B^T B)` for batches `A, B (..., d, k)`, `C (..., k, k)`."""
    return (C.mT @ (A.mT @ A) @ C * (B.mT @ B)).sum((-2, -1))


def k_composition(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor, w_k: torch.Tensor, w_o: torch.Tensor):
    """K-composition `||W_qk W_ov||_F / (||W_qk||_F ||W_ov||_F)` from the factors of `qkov_factors`, batched.

    `W_qk = A w_k^T` and `W_ov = w_o B^T`; each squared norm is a trace of two `k x k` Grams.
    """
    qk2 = ((A.mT @ A) * (w_k.mT @ w_k)).sum((-2, -1))
    ov2 = ((w_o.mT @ w_o) * (B.mT @ B)).sum((-2, -1))
    return (factored_frobenius2(A, C, B) / (qk2 * ov2)).sqrt()


def token_wins(E_A: torch.Tensor, C: torch.Tensor, E_B: torch.Tensor) -> torch.Tensor:
    """Share of rows t of `M = E_A C E_B^T` `(..., T, T)` whose largest entry is `M[t, t]`, without forming all of `M`.

    `E_A = W_E W_q`, `E_B = W_E W_v` `(..., T, k)`: `M` is the token-basis circuit, query token by source token.
    """
    left = E_A @ C
    wins = torch.zeros(left.shape[:-2], dtype=torch.float64)
    n = left.shape[-2]
    for start in range(0, n, TOKEN_CHUNK):
        rows = left[..., start : start + TOKEN_CHUNK, :] @ E_B.mT
        winners = rows.argmax(-1)
        wins += (winners == torch.arange(start, start + rows.shape[-2])).sum(-1)
    return wins / n


def qkov_factors(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> tuple[torch.Tensor, ...]:
    """Return float64 CPU `(A, C, B)`, `W_qkov = A C B^T` per pair: `A = W_q`, `C = W_k^T W_o`, `B = W_v`."""
    w_qk = torch.stack([W_all[l, h] for l, h in qk_heads]).detach().cpu().double()
    w_ov = torch.stack([W_all[l, h] for l, h in ov_heads]).detach().cpu().double()
    return w_qk[:, Q], w_qk[:, K].mT @ w_ov[:, O], w_ov[:, V]


@torch.no_grad()
@single_threaded()
def qkov_zscore_pairs(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> np.ndarray:
    """Diagonal z-score of `W_qk(qk_heads[i]) @ W_ov(ov_heads[i])` for each `i`, `(n,)`, `Z_CHUNK` pairs at a time."""
    out = []
    for start in range(0, len(qk_heads), Z_CHUNK):
        A, C, B = qkov_factors(W_all, qk_heads[start : start + Z_CHUNK], ov_heads[start : start + Z_CHUNK])
        out.append(factored_diagonal_zscore(A, C, B))
    return torch.cat(out).numpy()


def qkov_zscore_grid(W_all: torch.Tensor, IH_list: list, Shifting_list: list) -> np.ndarray:
    """Diagonal z-scores of `W_qk(IH) @ W_ov(SH)` for every pair, `(K0, K1)` (rows IHs, columns shifting heads)."""
    qk_heads = [ih for ih in IH_list for _ in Shifting_list]
    ov_heads = [sh for _ in IH_list for sh in Shifting_list]
    return qkov_zscore_pairs(W_all, qk_heads, ov_heads).reshape(len(IH_list), len(Shifting_list))


def embedding_basis(W_E: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues `(d,)` and eigenvectors `(d, d)` (columns) of `W_E^T W_E`, descending; `W_E (vocab, d_model)`.

    Sign convention (fixed, so that the embedding-basis z-score does not depend on the eigensolver):
    each eigenvector points so that the mean token embedding has a non-negative component along it.
    """
    W = _embedding(W_E)
    values, vectors = torch.linalg.eigh(W.T @ W)
    return values.flip(-1), orient_signs(vectors.flip(-1), W.mean(0))


def orient_signs(vectors: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip columns of `vectors (d, n)` so that `reference (d,)` has a non-negative component along each."""
    signs = torch.where(reference @ vectors < 0, -1.0, 1.0).to(vectors.dtype)
    return vectors * signs


def _embedding(W_E: torch.Tensor | np.ndarray) -> torch.Tensor:
    """`W_E` as a float64 CPU tensor `(vocab, d_model)`, or raise."""
    W = torch.as_tensor(W_E).detach().cpu().double()
    if W.ndim != 2:
        raise IHLibError(f"W_E must be the token embedding (vocab, d_model), got shape {tuple(W.shape)}.")
    return W


@torch.no_grad()
@single_threaded()
def pair_statistics(
    W_all: torch.Tensor,
    qk_heads: list,
    ov_heads: list,
    *,
    W_E: torch.Tensor | np.ndarray | None = None,
    max_tokens: int = MAX_TOKENS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every statistic of `STATISTICS` `(n,)` for the pairs `W_qk(qk_heads[i]) W_ov(ov_heads[i])`.

    Without `W_E` only "z" and "k_composition". The token-basis rate uses every token, or a seeded sample of
    `max_tokens` tokens of a larger vocabulary (the argmax is then over the sampled tokens).
    """
    basis = tokens = None
    if W_E is not None:
        W = _embedding(W_E)
        basis = embedding_basis(W)[1]
        keep = np.arange(W.shape[0])
        if keep.size > max_tokens:
            keep = np.sort(np.random.default_rng(seed).choice(keep.size, size=max_tokens, replace=False))
        tokens = W[torch.from_numpy(keep)]
    out: dict[str, list] = {name: [] for name in STATISTICS if W_E is not None or name in ("z", "k_composition")}
    for start in range(0, len(qk_heads), Z_CHUNK):
        qk, ov = qk_heads[start : start + Z_CHUNK], ov_heads[start : start + Z_CHUNK]
        A, C, B = qkov_factors(W_all, qk, ov)
        w_k = torch.stack([W_all[l, h, K] for l, h in qk]).detach().cpu().double()
        w_o = torch.stack([W_all[l, h, O] for l, h in ov]).detach().cpu().double()
        out["z"].append(factored_diagonal_zscore(A, C, B))
        out["k_composition"].append(k_composition(A, C, B, w_k, w_o))
        if basis is not None:
            out["z_embedding"].append(factored_diagonal_zscore(basis.T @ A, C, basis.T @ B))
            out["token_wins"].append(token_wins(tokens @ A, C, tokens @ B))
    return {name: torch.cat(values).numpy() if values else np.zeros(0) for name, values in out.items()}
