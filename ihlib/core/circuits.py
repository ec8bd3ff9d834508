"""The QK-OV circuit of a pair of heads, `W_qkov = W_qk(QK head) W_ov(OV head)`, in factored form, batched.

`W_qkov = A C B^T` with `A = W_q`, `C = W_k^T W_o`, `B = W_v` (`d x d_head`, `d_head x d_head`, `d x d_head`);
the `d x d` product is never formed. Statistics of a pair (`STATISTICS`): the diagonal z-score
`(mean(diag M) - mean(M)) / std(M)` (population std) in the residual basis and in the embedding basis; the
composition scores of Elhage et al. (2021) as TransformerLens defines them, K: `||W_qk W_ov||_F`, Q:
`||W_qk^T W_ov||_F`, V: `||W_ov(QK head) W_ov||_F`, each over the product of the two norms; and the token-basis
rate: how often token t's own column wins row t of `W_E W_qk W_ov W_E^T` (query token t, source token s).
Many pairs at once go through `pair_statistics` (per-head quantities once, see `pair_grams`); `composition_scores`
scores every composable pair of a model. Layer norms and biases are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.factored import single_threaded
from ihlib.core.pair_grams import PRODUCTS, HeadFactors, head_factors, pair_products
from ihlib.model.errors import IHLibError
from ihlib.model.weights import K, O, Q, V, check_w_all

TOKEN_CHUNK = 1024  # query tokens per step of the token-basis circuit
TOKEN_PAIR_ELEMENTS = 2**24  # entries of the token-basis circuit held at once (pairs x TOKEN_CHUNK x tokens)
MAX_TOKENS = 4096  # the token-basis rate uses at most this many tokens (a seeded sample of a larger vocabulary)
STATISTICS = {
    "z": "diagonal z-score (residual basis)",
    "z_embedding": "diagonal z-score (embedding basis, signs fixed)",
    "k_composition": "K-composition score (Elhage et al. 2021)",
    "token_wins": "token-basis rate: own token wins its row",
    "q_composition": "Q-composition score (Elhage et al. 2021)",
    "v_composition": "V-composition score (Elhage et al. 2021)",
}
CLAIM_STATISTICS = ("z", "z_embedding", "k_composition", "token_wins")  # the ones claim 1 compares (default)
EMBEDDING_STATISTICS = ("z_embedding", "token_wins")  # need the token embedding W_E
PRODUCTS_OF = {  # pair products (pair_grams.PRODUCTS) of each statistic; token_wins has its own path
    "z": ("K", "trace"),
    "z_embedding": ("K", "trace"),
    "k_composition": ("K",),
    "q_composition": ("Q",),
    "v_composition": ("V",),
}


SPREAD_RTOL = 1e-4  # a std below this share of the entries' root mean square is rounding (float32 sums)


def standardised(excess: torch.Tensor, std: torch.Tensor, mean_square: torch.Tensor) -> torch.Tensor:
    """`excess / std`, and 0 where the matrix has no spread beyond rounding (`std <= SPREAD_RTOL x rms`): a zero or
    constant matrix has no diagonal to speak of. The one rule of every diagonal z-score path."""
    spread = std > SPREAD_RTOL * mean_square.sqrt()
    return torch.where(spread, excess / torch.where(spread, std, 1.0), 0.0)


def diagonal_zscore(M: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return `(mean(diag M) - mean(M)) / std(M)` over the last two dims of square `M (..., d, d)`; population std."""
    M = torch.as_tensor(M, dtype=torch.float64)
    diag_mean = torch.diagonal(M, dim1=-2, dim2=-1).mean(-1)
    std = M.std((-2, -1), correction=0)
    return standardised(diag_mean - M.mean((-2, -1)), std, (M**2).mean((-2, -1)))


def factored_diagonal_zscore(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Diagonal z-score of `M = A C B^T` for batches `A, B (..., d, k)`, `C (..., k, k)` without forming `M`.

    `trace M = <C, B^T A>`, `sum M = (A^T 1)^T C (B^T 1)`, `|M|_F^2 = trace(C^T A^T A C B^T B)`.
    """
    d = A.shape[-2]
    trace = (C * (B.mT @ A).mT).sum((-2, -1))
    total = ((A.sum(-2).unsqueeze(-2) @ C) * B.sum(-2).unsqueeze(-2)).sum((-2, -1))
    mean = total / d**2
    mean_square = factored_frobenius2(A, C, B) / d**2
    std = (mean_square - mean**2).clamp_min(0).sqrt()
    return standardised(trace / d - mean, std, mean_square)


def factored_frobenius2(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """`||A C B^T||_F^2 = trace(C^T A^T A C B^T B)` for batches `A, B (..., d, k)`, `C (..., k, k)`."""
    return (C.mT @ (A.mT @ A) @ C * (B.mT @ B)).sum((-2, -1))


def qkov_factors(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> tuple[torch.Tensor, ...]:
    """Return float64 CPU `(A, C, B)`, `W_qkov = A C B^T` per pair: `A = W_q`, `C = W_k^T W_o`, `B = W_v`."""
    w_qk = torch.stack([W_all[l, h] for l, h in qk_heads]).detach().cpu().double()
    w_ov = torch.stack([W_all[l, h] for l, h in ov_heads]).detach().cpu().double()
    return w_qk[:, Q], w_qk[:, K].mT @ w_ov[:, O], w_ov[:, V]


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
    W = torch.as_tensor(W_E, device="cpu").detach().double()
    if W.ndim != 2:
        raise IHLibError(f"W_E must be the token embedding (vocab, d_model), got shape {tuple(W.shape)}.")
    return W


def _head_ids(heads: list, n_head: int) -> np.ndarray:
    """Flat ids `layer * n_head + head` `(n,)` of `[layer, head]` rows."""
    heads = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
    return heads[:, 0] * n_head + heads[:, 1]


def _default_statistics(with_embedding: bool) -> tuple[str, ...]:
    """The statistics claim 1 compares: z-score and K-composition, with the embedding-basis ones when `W_E` is given."""
    return tuple(s for s in CLAIM_STATISTICS if with_embedding or s not in EMBEDDING_STATISTICS)


def _check_statistics(statistics: tuple[str, ...], with_embedding: bool) -> tuple[str, ...]:
    """Return `statistics` as a tuple, or raise for an unknown name or an embedding statistic without `W_E`."""
    statistics = tuple(statistics)
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        raise IHLibError(f"Unknown statistics {unknown}: choose from {list(STATISTICS)}.")
    if not with_embedding and set(statistics) & set(EMBEDDING_STATISTICS):
        raise IHLibError(f"{sorted(set(statistics) & set(EMBEDDING_STATISTICS))} need W_E: pass the token embedding.")
    return statistics


def _products_for(statistics: tuple[str, ...]) -> tuple[str, ...]:
    """The pair products (`pair_grams.PRODUCTS`) that `statistics` need."""
    needed = {p for s in statistics for p in PRODUCTS_OF.get(s, ())}
    return tuple(p for p in PRODUCTS if p in needed)


def _sums(factors: HeadFactors, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`W_qk^T u` and `W_ov u` of every head, `(n_heads, d, 1)` each, float64: `sum(M) = u^T W_qk W_ov u`.

    Products in the weights' dtype (two matrix-vector products per head), summed in float64 by the caller."""
    W, u = factors.W, u.to(factors.W.dtype)
    return tuple((W[:, out] @ (u @ W[:, into]).unsqueeze(-1)).double() for into, out in ((Q, K), (V, O)))


def _zscore(products: dict, qk_sum: torch.Tensor, ov_sum: torch.Tensor, d: int) -> torch.Tensor:
    """Diagonal z-score from `trace`, `||M||_F^2` ("K") and `sum(M) = qk_sum . ov_sum` `(n, d)` per pair, `(n,)`;
    0 where `M` has no spread beyond rounding (a zero or constant matrix has no diagonal to speak of)."""
    mean = (qk_sum * ov_sum).sum(-1) / d**2
    mean_square = products["K"] / d**2
    std = (mean_square - mean**2).clamp_min(0).sqrt()
    return standardised(products["trace"] / d - mean, std, mean_square)


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
    statistics: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Statistics of `STATISTICS` `(n,)` float64 for the pairs `W_qk(qk_heads[i]) W_ov(ov_heads[i])`.

    By default the ones claim 1 compares (`CLAIM_STATISTICS`; without `W_E` only "z" and "k_composition"). Per-head
    quantities once, pairs from inner products (`pair_grams`), in the weights' dtype with float64 sums, on one thread
    (see `factored.single_threaded`). The token-basis rate uses every token, or a seeded sample of `max_tokens`
    tokens of a larger vocabulary.
    """
    with_embedding = W_E is not None
    statistics = _default_statistics(with_embedding) if statistics is None else statistics
    statistics = _check_statistics(statistics, with_embedding)
    if not len(qk_heads):
        return {name: np.zeros(0) for name in statistics}
    factors = head_factors(W_all)
    receivers, senders = _head_ids(qk_heads, factors.n_head), _head_ids(ov_heads, factors.n_head)
    products = pair_products(factors, receivers, senders, _products_for(statistics))
    d = factors.d_model
    out = {}
    for name in statistics:
        if name in ("z", "z_embedding"):
            u = torch.ones(d, dtype=torch.float64, device="cpu") if name == "z" else embedding_basis(W_E)[1].sum(1)
            qk_sums, ov_sums = _sums(factors, u)
            out[name] = _zscore(products, qk_sums[receivers, :, 0], ov_sums[senders, :, 0], d)
        elif name == "token_wins":
            out[name] = token_wins(factors, receivers, senders, _token_sample(W_E, max_tokens, seed))
        else:
            kind = PRODUCTS_OF[name][0]
            reader_norm2 = (factors.ov_norm2 if kind == "V" else factors.qk_norm2)[receivers]
            out[name] = (products[kind] / (reader_norm2 * factors.ov_norm2[senders])).sqrt()
    return {name: values.numpy() for name, values in out.items()}


def _token_sample(W_E: torch.Tensor | np.ndarray, max_tokens: int, seed: int) -> torch.Tensor:
    """Rows of `W_E` `(T, d)` float64: every token, or a seeded sorted sample of `max_tokens` of a larger vocabulary."""
    W = _embedding(W_E)
    keep = np.arange(W.shape[0])
    if keep.size > max_tokens:
        keep = np.sort(np.random.default_rng(seed).choice(keep.size, size=max_tokens, replace=False))
    return W[torch.from_numpy(keep)]


def token_wins(factors: HeadFactors, receivers: np.ndarray, senders: np.ndarray, tokens: torch.Tensor) -> torch.Tensor:
    """Share of rows t of `M = E W_qk(r) W_ov(s) E^T (T, T)` whose largest entry is `M[t, t]`, per pair `(n,)`.

    `E = tokens (T, d)`; row t is query token t, column s source token s. Per head `E W_q` and `E W_v` `(T, k)` once,
    per pair the core `W_k^T W_o (k, k)`; rows `TOKEN_CHUNK` at a time, in the weights' dtype.
    """
    W = factors.W
    E = tokens.to(W.dtype)
    recv, send = torch.from_numpy(receivers), torch.from_numpy(senders)
    n_tokens = E.shape[0]
    wins = torch.zeros(len(receivers), dtype=torch.float64, device="cpu")
    pair_chunk = max(1, TOKEN_PAIR_ELEMENTS // (min(TOKEN_CHUNK, n_tokens) * n_tokens))
    for first in range(0, len(receivers), pair_chunk):
        r, s = recv[first : first + pair_chunk], send[first : first + pair_chunk]
        left = (E @ W[r, Q]) @ (W[r, K].mT @ W[s, O])  # (p, T, k)
        right = E @ W[s, V]  # (p, T, k)
        for start in range(0, n_tokens, TOKEN_CHUNK):
            winners = (left[:, start : start + TOKEN_CHUNK] @ right.mT).argmax(-1)
            own = torch.arange(start, start + winners.shape[-1], device="cpu")
            wins[first : first + pair_chunk] += (winners == own).sum(-1)
    return wins / n_tokens


def qkov_zscore_pairs(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> np.ndarray:
    """Diagonal z-score of `W_qk(qk_heads[i]) @ W_ov(ov_heads[i])` for each `i`, `(n,)` (`pair_statistics`' "z")."""
    return pair_statistics(W_all, qk_heads, ov_heads, statistics=("z",))["z"]


def qkov_zscore_grid(W_all: torch.Tensor, IH_list: list, Shifting_list: list) -> np.ndarray:
    """Diagonal z-scores of `W_qk(IH) @ W_ov(SH)` for every pair, `(K0, K1)` (rows IHs, columns shifting heads)."""
    qk_heads = [ih for ih in IH_list for _ in Shifting_list]
    ov_heads = [sh for _ in IH_list for sh in Shifting_list]
    return qkov_zscore_pairs(W_all, qk_heads, ov_heads).reshape(len(IH_list), len(Shifting_list))


COMPOSITION_KINDS = {"Q": "q_composition", "K": "k_composition", "V": "v_composition"}


@dataclass(frozen=True)
class CompositionScores:
    """Composition scores of every pair that can compose: `scores[kind] (L, H, L, H)`, receiver by sender head.

    `scores[kind][l, h, l2, h2]` is the `kind` ("Q", "K", "V") composition of receiving head `(l, h)` with sending
    head `(l2, h2)` (Elhage et al. 2021, as TransformerLens defines them); NaN unless `l2 < l`.
    """

    scores: dict[str, np.ndarray]
    name = "composition_scores"

    @property
    def shape(self) -> tuple[int, int]:
        """`(n_layer, n_head)` of the model."""
        return tuple(next(iter(self.scores.values())).shape[:2])

    def record(self) -> dict:
        """JSON-friendly summary per kind: pairs, mean, largest score and its pair."""
        summary = {}
        for kind, grid in self.scores.items():
            flat = np.nan_to_num(grid, nan=-np.inf)
            l, h, l2, h2 = np.unravel_index(int(np.argmax(flat)), grid.shape)
            summary[kind] = {
                "n_pairs": int(np.isfinite(grid).sum()),
                "mean": float(np.nanmean(grid)),
                "max": float(grid[l, h, l2, h2]),
                "max_pair": f"L{l}H{h} x L{l2}H{h2}",
            }
        return summary

    def arrays(self) -> dict[str, np.ndarray]:
        """One grid per kind, for the NPZ file."""
        return {f"{kind}_composition": grid for kind, grid in self.scores.items()}


def composable_pairs(shape: tuple[int, int]) -> tuple[list[list[int]], list[list[int]]]:
    """Every (receiver, sender) pair of a `(n_layer, n_head)` model whose sender is in an earlier layer: two lists."""
    n_layer, n_head = shape
    receivers = [[l, h] for l in range(n_layer) for h in range(n_head) for _ in range(l * n_head)]
    senders = [[l2, h2] for l in range(n_layer) for _ in range(n_head) for l2 in range(l) for h2 in range(n_head)]
    return receivers, senders


def composition_scores(W_all: torch.Tensor, *, kinds: tuple[str, ...] = ("Q", "K", "V")) -> CompositionScores:
    """Q-, K- and V-composition scores of every composable pair of heads of `W_all (L, H, 4, d, k)`, one pass."""
    check_w_all(W_all)
    unknown = [kind for kind in kinds if kind not in COMPOSITION_KINDS]
    if unknown:
        raise IHLibError(f"Unknown composition kinds {unknown}: choose from {list(COMPOSITION_KINDS)}.")
    shape = tuple(W_all.shape[:2])
    receivers, senders = composable_pairs(shape)
    values = pair_statistics(W_all, receivers, senders, statistics=tuple(COMPOSITION_KINDS[k] for k in kinds))
    r, s = np.asarray(receivers).reshape(-1, 2), np.asarray(senders).reshape(-1, 2)
    scores = {}
    for kind in kinds:
        grid = np.full(shape + shape, np.nan)
        grid[r[:, 0], r[:, 1], s[:, 0], s[:, 1]] = values[COMPOSITION_KINDS[kind]]
        scores[kind] = grid
    return CompositionScores(scores)
