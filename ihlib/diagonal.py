"""Claim 1: the diagonal of `W_qkov = W_qk(IH) W_ov(shifting head)` is large, against random head pairs.

Everything stays in factored form (DESIGN.md section 2): the diagonal z-score of `W_qkov = A C B^T`
(`A = W_q`, `C = W_k^T W_o`, `B = W_v`) comes from `d_head x d_head` Gram matrices, `d x d` never formed.
Diagonal z-score of `M`: `(mean(diag M) - mean(M)) / std(M)`, population std.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.errors import IHLibError
from ihlib.factored import single_threaded
from ihlib.heads import check_heads, draw_head_pairs, head_labels
from ihlib.stats import CHANCE_ABOVE_Q95, binomial_tail, percentile_of
from ihlib.weights import K, O, Q, V, check_w_all

Z_CHUNK = 64  # head pairs per batched z-score step
SEED_Z_THRESHOLD = 2.0  # the seed's rule of thumb: z > 2 means "large diagonal"


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
    frob2 = (C.mT @ (A.mT @ A) @ C * (B.mT @ B)).sum((-2, -1))
    mean = total / d**2
    std = (frob2 / d**2 - mean**2).clamp_min(0).sqrt()
    return (trace / d - mean) / std


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
    """Eigenvalues `(d,)` and eigenvectors `(d, d)` (columns) of `W_E^T W_E`, descending; `W_E (vocab, d_model)`."""
    W = torch.as_tensor(W_E).detach().cpu().double()
    if W.ndim != 2:
        raise IHLibError(f"W_E must be the token embedding (vocab, d_model), got shape {tuple(W.shape)}.")
    values, vectors = torch.linalg.eigh(W.T @ W)
    return values.flip(-1), vectors.flip(-1)


def _positive_int(value: int, name: str) -> int:
    """Return `value` as int, or raise when it is below 1."""
    if int(value) < 1:
        raise IHLibError(f"{name} must be at least 1, got {value}.")
    return int(value)


@dataclass
class QKOVMatching:
    """Heatmap data for selected `(IH, shifting head)` pairs: the top-left `block x block` of `W_qkov`.

    `residual_blocks (P, b, b)` in residual coordinates; `embedding_blocks (P, b, b)` in the basis of the top
    eigenvectors of `W_E^T W_E` (None without `W_E`); z-scores are of the full `d x d` matrix in that basis.
    """

    pairs: list[list[list[int]]]
    partner_rule: str
    skipped: list[list[int]]
    block: int
    residual_blocks: np.ndarray
    residual_z: np.ndarray
    embedding_blocks: np.ndarray | None
    embedding_z: np.ndarray | None
    embedding_eigenvalues: np.ndarray | None
    note: str
    name = "qkov_matching"

    def record(self) -> dict:
        """JSON-friendly summary: pairs, partner rule, z-scores per basis."""
        return {
            "pairs": self.pairs,
            "labels": [" x ".join(head_labels(p)) for p in self.pairs],
            "partner_rule": self.partner_rule,
            "skipped_IHs": self.skipped,
            "block": self.block,
            "residual_z": self.residual_z,
            "embedding_z": self.embedding_z,
            "note": self.note,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Blocks, z-scores and eigenvalues, for the NPZ file."""
        arrays = {"pairs": np.array(self.pairs), "residual_blocks": self.residual_blocks, "residual_z": self.residual_z}
        if self.embedding_blocks is not None:
            arrays |= {
                "embedding_blocks": self.embedding_blocks,
                "embedding_z": self.embedding_z,
                "embedding_eigenvalues": self.embedding_eigenvalues,
            }
        return arrays


@torch.no_grad()
@single_threaded()
def qkov_blocks(
    W_all: torch.Tensor,
    IH_list: list,
    *,
    Shifting_list: list | None = None,
    n_partners: int = 2,
    W_E: torch.Tensor | np.ndarray | None = None,
    block: int = 64,
) -> QKOVMatching:
    """Blocks of `W_qkov = W_qk(IH) @ W_ov(SH)` for each IH with `n_partners` partners in earlier layers.

    Partners: the top entries of `Shifting_list` below the IH's layer; without `Shifting_list`, the
    earlier-layer heads with the largest diagonal z-score (a search, labelled as such). Blocks are in
    residual coordinates and, when `W_E` `(vocab, d_model)` is given, in its principal directions.
    """
    check_w_all(W_all)
    shape = tuple(W_all.shape[:2])
    IH_list = check_heads(IH_list, shape, name="IH_list")
    if Shifting_list is not None:
        Shifting_list = check_heads(Shifting_list, shape, name="Shifting_list")
    n_partners = _positive_int(n_partners, "n_partners")
    block = min(_positive_int(block, "block"), W_all.shape[3])
    pairs, skipped, rule = _qkov_pairs(W_all, IH_list, Shifting_list, n_partners)
    A, C, B = qkov_factors(W_all, [p[0] for p in pairs], [p[1] for p in pairs])
    residual_blocks = (A[:, :block] @ C @ B[:, :block].mT).numpy()
    residual_z = factored_diagonal_zscore(A, C, B).numpy()
    embedding_blocks = embedding_z = eigenvalues = None
    note = "Residual basis only: pass W_E (token embedding) for the embedding basis."
    if W_E is not None:
        eigenvalues, vectors = embedding_basis(W_E)
        if vectors.shape[0] != W_all.shape[3]:
            raise IHLibError(f"W_E has d_model {vectors.shape[0]}, W_all has {W_all.shape[3]}: use the same model.")
        A_e, B_e = vectors.T @ A, vectors.T @ B
        embedding_blocks = (A_e[:, :block] @ C @ B_e[:, :block].mT).numpy()
        embedding_z = factored_diagonal_zscore(A_e, C, B_e).numpy()
        eigenvalues = eigenvalues.numpy()
        note = "Residual basis and embedding basis (eigenvectors of W_E^T W_E, descending)."
    return QKOVMatching(
        pairs, rule, skipped, block, residual_blocks, residual_z, embedding_blocks, embedding_z, eigenvalues, note
    )


def _qkov_pairs(
    W_all: torch.Tensor, IH_list: list, Shifting_list: list | None, n_partners: int
) -> tuple[list, list, str]:
    """Pick `n_partners` earlier-layer partners per IH; return `(pairs, IHs without partner, rule)`."""
    if Shifting_list is not None:
        rule = f"top {n_partners} heads of Shifting_list in earlier layers"
        partners = {tuple(ih): [sh for sh in Shifting_list if sh[0] < ih[0]][:n_partners] for ih in IH_list}
    else:
        rule = f"the {n_partners} earlier-layer heads with the largest diagonal z-score (no Shifting_list given)"
        partners = {tuple(ih): _best_partners(W_all, ih, n_partners) for ih in IH_list}
    pairs = [[list(ih), sh] for ih, shs in partners.items() for sh in shs]
    skipped = [list(ih) for ih, shs in partners.items() if not shs]
    if not pairs:
        raise IHLibError("No IH in IH_list has a partner head in an earlier layer: choose IHs above layer 0.")
    return pairs, skipped, rule


def _best_partners(W_all: torch.Tensor, ih: list[int], n_partners: int) -> list[list[int]]:
    """Return the `n_partners` heads below `ih`'s layer whose `W_qkov` with `ih` has the largest diagonal z-score."""
    earlier = [[l, h] for l in range(ih[0]) for h in range(W_all.shape[1])]
    if not earlier:
        return []
    z = qkov_zscore_pairs(W_all, [ih] * len(earlier), earlier)
    return [earlier[i] for i in np.argsort(-z, kind="stable")[:n_partners]]


@dataclass
class QKOVZScores:
    """Diagonal z-scores `(K0, K1)` of listed pairs and a random-head-pair baseline `(N,)`."""

    IH_list: list[list[int]]
    Shifting_list: list[list[int]]
    zscores: np.ndarray
    composable: np.ndarray
    baseline: np.ndarray
    baseline_pairs: np.ndarray
    baseline_pool: str
    seed: int
    name = "qkov_zscores"

    @property
    def percentiles(self) -> np.ndarray:
        """Percentage of baseline z-scores at or below each listed pair's z-score, `(K0, K1)`."""
        return percentile_of(self.zscores, self.baseline)

    def record(self) -> dict:
        """JSON-friendly numbers: top pairs, baseline quantiles, fractions above 2 and above the baseline's 95th."""
        order = np.argsort(-self.zscores, axis=None, kind="stable")[:10]
        top = [np.unravel_index(i, self.zscores.shape) for i in order]
        q95 = float(np.percentile(self.baseline, 95))
        return {
            "top_pairs": [
                {
                    "pair": " x ".join(head_labels([self.IH_list[i], self.Shifting_list[j]])),
                    "z": float(self.zscores[i, j]),
                    "percentile": float(self.percentiles[i, j]),
                    "composable": bool(self.composable[i, j]),
                }
                for i, j in top
            ],
            "listed_median_z": float(np.median(self.zscores)),
            "baseline_median_z": float(np.median(self.baseline)),
            "baseline_q95_z": q95,
            "fraction_listed_above_2": float((self.zscores > 2).mean()),
            "fraction_listed_above_baseline_q95": float((self.zscores > q95).mean()),
            "baseline_pool": self.baseline_pool,
            "num_samp": int(self.baseline.size),
            "seed": self.seed,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Z-scores, percentiles, baseline and heads, for the NPZ file."""
        return {
            "zscores": self.zscores,
            "composable": self.composable,
            "percentiles": self.percentiles,
            "baseline": self.baseline,
            "baseline_pairs": self.baseline_pairs,
            "IH_list": np.array(self.IH_list),
            "Shifting_list": np.array(self.Shifting_list),
        }


def qkov_zscores(
    W_all: torch.Tensor, IH_list: list, Shifting_list: list, *, num_samp: int = 500, seed: int = 0
) -> QKOVZScores:
    """Diagonal z-scores of `W_qk(IH) @ W_ov(SH)` for every listed pair and for `num_samp` random head pairs.

    Baseline pairs are two distinct heads drawn (seeded) from the heads in neither list when possible;
    percentiles place each listed pair within that baseline. `composable` marks SH layer < IH layer.
    """
    check_w_all(W_all)
    shape = tuple(W_all.shape[:2])
    IH_list = check_heads(IH_list, shape, name="IH_list")
    Shifting_list = check_heads(Shifting_list, shape, name="Shifting_list")
    num_samp = _positive_int(num_samp, "num_samp")
    zscores = qkov_zscore_grid(W_all, IH_list, Shifting_list)
    composable = np.array([[sh[0] < ih[0] for sh in Shifting_list] for ih in IH_list])
    pairs, pool = draw_head_pairs(shape, IH_list + Shifting_list, num_samp, np.random.default_rng(seed))
    baseline = qkov_zscore_pairs(W_all, pairs[:, 0].tolist(), pairs[:, 1].tolist())
    return QKOVZScores(IH_list, Shifting_list, zscores, composable, baseline, pairs, pool, int(seed))


@dataclass(frozen=True)
class DiagonalJudgement:
    """Claim 1's rule applied to composable listed pairs: the label and the numbers it rests on."""

    label: str
    n: int
    above: int
    chance: float
    median: float
    baseline_low: float
    baseline_median: float
    baseline_high: float
    seed_rule: int


def judge_diagonal(result: QKOVZScores) -> DiagonalJudgement:
    """Claim 1 on composable listed pairs (SH below IH) against the random-head-pair baseline.

    Supported: their median z is above the baseline's 95th percentile; partly: more pairs are above it than
    chance explains (binomial tail `P(Binomial(n, 0.05) >= count) < 0.05`); not supported: otherwise; not
    tested: no listed pair can compose.
    """
    listed = result.zscores[result.composable]
    low, median_random, high = (float(v) for v in np.percentile(result.baseline, [5, 50, 95]))
    if listed.size == 0:
        return DiagonalJudgement("not tested", 0, 0, 1.0, float("nan"), low, median_random, high, 0)
    n, median, above = int(listed.size), float(np.median(listed)), int((listed > high).sum())
    chance = binomial_tail(above, n, CHANCE_ABOVE_Q95)
    if median > high:
        label = "supported"
    elif above > 0 and chance < CHANCE_ABOVE_Q95:
        label = "partly supported"
    else:
        label = "not supported"
    seed_rule = int((listed > SEED_Z_THRESHOLD).sum())
    return DiagonalJudgement(label, n, above, chance, median, low, median_random, high, seed_rule)
