"""Claims 1 and 2 in weight space: the diagonal of `W_qkov = W_qk(IH) W_ov(shifting head)` and subspace matching.

Everything stays in factored form (DESIGN.md section 2): z-scores of `W_qkov` come from `d_head x d_head`
Gram matrices, subspaces from one thin SVD per head (`ihlib.factored`), reused across pairs, ranks and
methods. Conventions: `W_qk = W_q W_k^T` (key side = its right singular vectors), `W_ov = W_o W_v^T`
(output side = its left singular vectors); matching of orthonormal bases `A0, A1` uses the singular
values `s` of `A0^T A1`: `largest = s[0]`, `mean = sqrt(mean(s**2))`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ihlib.errors import IHLibError
from ihlib.factored import check_rank, right_singular_subspace, single_threaded, thin_qr
from ihlib.plots import head_label, head_labels, save_arrays, save_figure, save_json
from ihlib.plots_weights import (
    plot_energy_profiles,
    plot_qkov_blocks,
    plot_qkov_zscores,
    plot_subspace_matching,
)
from ihlib.scoring import HeadScores
from ihlib.verdicts import Verdict
from ihlib.weights import K, O, Q, V, check_heads, check_w_all

METHODS = ("largest", "mean")
Z_CHUNK = 64  # head pairs per batched z-score step


# ---------------------------------------------------------------- diagonal z-scores (claim 1)


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
    """Return float64 `(A, C, B)`, `W_qkov = A C B^T` per pair: `A = W_q`, `C = W_k^T W_o`, `B = W_v`, `(n, ., .)`."""
    w_qk = torch.stack([W_all[l, h] for l, h in qk_heads]).double()
    w_ov = torch.stack([W_all[l, h] for l, h in ov_heads]).double()
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


@dataclass
class QKOVMatching:
    """Claim-1 heatmap data for selected `(IH, shifting head)` pairs: top-left `block x block` of `W_qkov`.

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
    figures: dict[str, plt.Figure] = field(default_factory=dict, repr=False)

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


@torch.no_grad()
@single_threaded()
def qkov_matching(
    W_all: torch.Tensor,
    IH_list: list,
    save_dir: str | Path | None = None,
    Shifting_list: list | None = None,
    n_partners: int = 2,
    W_E: torch.Tensor | np.ndarray | None = None,
    block: int = 64,
    plot: bool = True,
) -> QKOVMatching:
    """Heatmaps of `W_qkov = W_qk(IH) @ W_ov(SH)` for each IH with `n_partners` partners in earlier layers.

    Partners: the top entries of `Shifting_list` below the IH's layer; without `Shifting_list`, the
    earlier-layer heads with the largest diagonal z-score (a search, labelled as such). Blocks are shown in
    residual coordinates and, when `W_E` `(vocab, d_model)` is given, in its principal directions.
    """
    check_w_all(W_all)
    IH_list = _nonempty_heads(W_all, IH_list, "IH_list")
    if Shifting_list is not None:
        Shifting_list = _nonempty_heads(W_all, Shifting_list, "Shifting_list")
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
    result = QKOVMatching(
        pairs, rule, skipped, block, residual_blocks, residual_z, embedding_blocks, embedding_z, eigenvalues, note
    )
    _save_qkov_matching(result, save_dir)
    if plot:
        result.figures = {name: save_figure(fig, save_dir, name) for name, fig in plot_qkov_blocks(result).items()}
    return result


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


def _save_qkov_matching(result: QKOVMatching, save_dir: str | Path | None) -> None:
    """Save blocks and z-scores (NPZ) and the pair record (JSON) when `save_dir` is given."""
    arrays = {
        "pairs": np.array(result.pairs),
        "residual_blocks": result.residual_blocks,
        "residual_z": result.residual_z,
    }
    if result.embedding_blocks is not None:
        arrays |= {
            "embedding_blocks": result.embedding_blocks,
            "embedding_z": result.embedding_z,
            "embedding_eigenvalues": result.embedding_eigenvalues,
        }
    save_arrays(save_dir, "qkov_matching", **arrays)
    save_json(save_dir, "qkov_matching", result.record())


@dataclass
class QKOVZScores:
    """Claim-1 summary: diagonal z-scores `(K0, K1)` of listed pairs, a random-head-pair baseline `(N,)`."""

    IH_list: list[list[int]]
    Shifting_list: list[list[int]]
    zscores: np.ndarray
    composable: np.ndarray
    baseline: np.ndarray
    baseline_pairs: np.ndarray
    baseline_pool: str
    seed: int
    figures: dict[str, plt.Figure] = field(default_factory=dict, repr=False)

    @property
    def percentiles(self) -> np.ndarray:
        """Percentage of baseline z-scores at or below each listed pair's z-score, `(K0, K1)`."""
        return percentile_of(self.zscores, self.baseline)

    def summary(self) -> dict:
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


def qkov_zscores(
    W_all: torch.Tensor,
    IH_list: list,
    Shifting_list: list,
    save_dir: str | Path | None = None,
    num_samp: int = 500,
    seed: int = 0,
    plot: bool = True,
) -> QKOVZScores:
    """Diagonal z-scores of `W_qk(IH) @ W_ov(SH)` for every listed pair and for `num_samp` random head pairs.

    Baseline pairs are two distinct heads drawn (seeded) from the heads in neither list when possible;
    percentiles place each listed pair within that baseline. `composable` marks SH layer < IH layer.
    """
    check_w_all(W_all)
    IH_list = _nonempty_heads(W_all, IH_list, "IH_list")
    Shifting_list = _nonempty_heads(W_all, Shifting_list, "Shifting_list")
    num_samp = _positive_int(num_samp, "num_samp")
    zscores = qkov_zscore_grid(W_all, IH_list, Shifting_list)
    composable = np.array([[sh[0] < ih[0] for sh in Shifting_list] for ih in IH_list])
    pairs, pool = draw_head_pairs(W_all.shape[:2], IH_list + Shifting_list, num_samp, np.random.default_rng(seed))
    baseline = qkov_zscore_pairs(W_all, pairs[:, 0].tolist(), pairs[:, 1].tolist())
    result = QKOVZScores(IH_list, Shifting_list, zscores, composable, baseline, pairs, pool, int(seed))
    save_arrays(
        save_dir,
        "qkov_zscores",
        zscores=zscores,
        composable=composable,
        percentiles=result.percentiles,
        baseline=baseline,
        baseline_pairs=pairs,
        IH_list=np.array(IH_list),
        Shifting_list=np.array(Shifting_list),
    )
    save_json(save_dir, "qkov_zscores", result.summary())
    if plot:
        result.figures = {name: save_figure(fig, save_dir, name) for name, fig in plot_qkov_zscores(result).items()}
    return result


def qkov_matching_summary(
    W_all: torch.Tensor,
    IH_list: list,
    Shifting_list: list,
    save_dir: str | Path | None = None,
    num_samp: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """The seed's call: diagonal z-scores `(K0, K1)`; saves heatmap, histogram (with the random-pair baseline), data."""
    result = qkov_zscores(W_all, IH_list, Shifting_list, save_dir, num_samp, seed, plot=save_dir is not None)
    _close(result.figures)
    return result.zscores


# ---------------------------------------------------------------- subspace matching (claim 2)


SIDE_FACTORS = {"key": (Q, K), "output": (V, O)}  # right singular vectors of W_q W_k^T and of W_v W_o^T = W_ov^T
HEAD_CHUNK = 16  # heads per batched SVD step


class HeadSubspaces:
    """Top-`max_rank` singular bases of the heads of `W_all`, float64, computed on first use and cached.

    Key side: right singular vectors of `W_qk = W_q W_k^T`; output side: left singular vectors of
    `W_ov = W_o W_v^T` (the right ones of `W_v W_o^T`). One factored thin SVD per head and side, batched
    over the heads a request needs, reused across pairs, ranks, methods and calls. `W_all` is read when a
    head is first needed: do not edit it in place afterwards.
    """

    def __init__(self, W_all: torch.Tensor, max_rank: int | None = None) -> None:
        check_w_all(W_all)
        n_layer, n_head, _, d_model, d_head = W_all.shape
        self.W_all = W_all
        self.max_rank = d_head if max_rank is None else check_rank(max_rank, d_head)
        shape = (n_layer, n_head)
        self._bases = {side: torch.zeros(*shape, d_model, self.max_rank, dtype=torch.float64) for side in SIDE_FACTORS}
        self._values = {side: torch.zeros(*shape, self.max_rank, dtype=torch.float64) for side in SIDE_FACTORS}
        self._ready = {side: np.zeros(shape, dtype=bool) for side in SIDE_FACTORS}

    def bases(self, side: str, heads: list | np.ndarray) -> torch.Tensor:
        """Return the `(n, d_model, max_rank)` bases of `heads` (`[layer, head]` rows) on `side` ("key" or "output")."""
        index = self._prepare(side, heads)
        return self._bases[side][index]

    def values(self, side: str, heads: list | np.ndarray) -> torch.Tensor:
        """Return the top `(n, max_rank)` singular values of `W_qk` ("key") or `W_ov` ("output") of `heads`."""
        index = self._prepare(side, heads)
        return self._values[side][index]

    def _prepare(self, side: str, heads: list | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the missing heads of `side` in batches; return the `(layers, heads)` index tensors."""
        if side not in SIDE_FACTORS:
            raise IHLibError(f"Unknown side {side!r}: choose 'key' (W_qk) or 'output' (W_ov).")
        heads = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
        missing = np.unique(heads[~self._ready[side][heads[:, 0], heads[:, 1]]], axis=0)
        for start in range(0, len(missing), HEAD_CHUNK):
            self._compute(side, missing[start : start + HEAD_CHUNK])
        return torch.from_numpy(heads[:, 0]), torch.from_numpy(heads[:, 1])

    @torch.no_grad()
    @single_threaded()
    def _compute(self, side: str, heads: np.ndarray) -> None:
        """Factored SVDs of `heads` `(n, 2)` on `side`, batched; store bases and singular values."""
        layers, cols = torch.from_numpy(heads[:, 0]), torch.from_numpy(heads[:, 1])
        first, second = SIDE_FACTORS[side]
        A = self.W_all[layers, cols, first].double()
        B = self.W_all[layers, cols, second].double()
        values, vectors = right_singular_subspace(A, B, self.max_rank)
        self._values[side][layers, cols] = values
        self._bases[side][layers, cols] = vectors
        self._ready[side][heads[:, 0], heads[:, 1]] = True


def head_subspaces(W_all: torch.Tensor, max_rank: int | None = None) -> HeadSubspaces:
    """Per-head key (`W_qk`) and output (`W_ov`) subspaces up to `max_rank` (default d_head), computed on first use."""
    return HeadSubspaces(W_all, max_rank)


def matching_scores(cross: torch.Tensor, ranks: list[int], methods: tuple[str, ...]) -> torch.Tensor:
    """Scores `(M, R, ...)` from cross products `A0^T A1` `(..., r_max, r_max)` of nested bases, sliced per rank.

    The top-r bases are the first r columns, so rank r uses `cross[..., :r, :r]`.
    """
    scores = [[_score(cross[..., :r, :r], m) for r in ranks] for m in methods]
    return torch.stack([torch.stack(row) for row in scores]).clamp(0.0, 1.0)


def _score(cross: torch.Tensor, method: str) -> torch.Tensor:
    """Score of square cross products `(..., r, r)`: spectral norm ("largest") or RMS singular value ("mean")."""
    if method == "largest":
        return torch.linalg.matrix_norm(cross, ord=2)
    return torch.linalg.matrix_norm(cross, ord="fro") / cross.shape[-1] ** 0.5


@single_threaded()
def subspace_match_score(A0: torch.Tensor, A1: torch.Tensor, method: str = "largest") -> torch.Tensor:
    """Match orthonormal bases `A0 (..., d, r0)`, `A1 (..., d, r1)`: "largest" `s[0]`, "mean" `sqrt(mean(s^2))`."""
    (method,) = check_methods([method])
    s = torch.linalg.svdvals(A0.mT @ A1)
    return s[..., 0] if method == "largest" else (s**2).mean(-1).sqrt()


@single_threaded()
def gaussian_baseline(
    d_model: int, ranks: list[int], methods: tuple[str, ...], num_samp: int, rng: np.random.Generator
) -> np.ndarray:
    """Scores `(M, R, num_samp)` of pairs of independent uniformly random subspaces of `R^d_model`.

    By rotation invariance one subspace of each pair can be the first r coordinates, so the cross product
    is the top `r x r` block of an orthonormal basis from the QR of a Gaussian `d_model x r_max` matrix;
    its first r columns span the first r Gaussian columns, so every rank is uniformly distributed.
    """
    r_max = max(ranks)
    gauss = torch.from_numpy(rng.standard_normal((num_samp, d_model, r_max)))
    bases = thin_qr(gauss).apply_q(torch.eye(r_max, dtype=torch.float64))
    return matching_scores(bases[:, :r_max, :], ranks, methods).numpy()


def draw_head_pairs(
    shape: tuple[int, int], exclude: list, num_samp: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Draw `num_samp` pairs of distinct heads `(N, 2, 2)` (`[layer, head]`), avoiding `exclude` when possible.

    Returns the pairs and a description of the pool they came from.
    """
    n_layer, n_head = int(shape[0]), int(shape[1])
    everything = np.arange(n_layer * n_head)
    pool = np.setdiff1d(everything, [l * n_head + h for l, h in exclude])
    label = f"all {pool.size} heads outside the {everything.size - pool.size} heads under test"
    if pool.size < 2:
        pool, label = everything, f"all {everything.size} heads (too few heads outside those under test)"
    if pool.size < 2:
        raise IHLibError("Random-head baselines need a model with at least 2 heads.")
    first = rng.integers(pool.size, size=num_samp)
    second = (first + 1 + rng.integers(pool.size - 1, size=num_samp)) % pool.size
    flat = pool[np.stack([first, second], axis=1)]
    return np.stack([flat // n_head, flat % n_head], axis=-1), label


def percentile_of(scores: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Percentage of `baseline (..., N)` at or below each score in `scores (..., *S)`; leading dims must match."""
    extra = scores.ndim - baseline.ndim + 1
    base = baseline.reshape(baseline.shape[:-1] + (1,) * extra + baseline.shape[-1:])
    return 100.0 * (base <= scores[..., None]).mean(-1)


@dataclass
class SubspaceMatching:
    """Claim-2 result: scores `s_match (M, R, K0, K1)` of row vs column heads, and two baselines `(M, R, N)`.

    `mode` is "IH x IH" (key vs key side), "SH x SH" (output vs output) or "IH x SH" (key vs output);
    `gaussian_baseline` uses random Gaussian subspaces, `head_baseline` random heads of the same model
    (`head_baseline_pairs (N, 2, 2)`, drawn from `head_pool`).
    """

    mode: str
    row_heads: list[list[int]]
    col_heads: list[list[int]]
    ranks: list[int]
    methods: tuple[str, ...]
    s_match: np.ndarray
    gaussian_baseline: np.ndarray
    head_baseline: np.ndarray
    head_baseline_pairs: np.ndarray
    head_pool: str
    seed: int
    figures: dict[str, plt.Figure] = field(default_factory=dict, repr=False)

    @property
    def symmetric(self) -> bool:
        """True for "IH x IH" and "SH x SH", where rows and columns are the same heads."""
        return self.mode != "IH x SH"

    def pair_scores(self) -> np.ndarray:
        """Scores `(M, R, P)` of the distinct listed pairs: the upper triangle when symmetric, else every pair."""
        if self.symmetric:
            rows, cols = np.triu_indices(len(self.row_heads), k=1)
            return self.s_match[..., rows, cols]
        return self.s_match.reshape(self.s_match.shape[:2] + (-1,))

    def percentiles(self, baseline: str = "heads") -> np.ndarray:
        """Percentile `(M, R, K0, K1)` of each listed score within the "heads" or "gaussian" baseline."""
        if baseline not in ("heads", "gaussian"):
            raise IHLibError(f"Unknown baseline {baseline!r}: choose 'heads' or 'gaussian'.")
        return percentile_of(self.s_match, self.head_baseline if baseline == "heads" else self.gaussian_baseline)

    def summary(self) -> list[dict]:
        """One JSON-friendly row per method and rank: listed-pair median, baselines' mean and 95th percentile."""
        pairs = self.pair_scores()
        rows = []
        for i, method in enumerate(self.methods):
            for j, rank in enumerate(self.ranks):
                listed, heads, gauss = pairs[i, j], self.head_baseline[i, j], self.gaussian_baseline[i, j]
                q95 = float(np.percentile(heads, 95))
                rows.append(
                    {
                        "method": method,
                        "rank": rank,
                        "listed_median": float(np.median(listed)) if listed.size else float("nan"),
                        "listed_max": float(listed.max()) if listed.size else float("nan"),
                        "heads_mean": float(heads.mean()),
                        "heads_q95": q95,
                        "gaussian_mean": float(gauss.mean()),
                        "gaussian_q95": float(np.percentile(gauss, 95)),
                        "fraction_listed_above_heads_q95": float((listed > q95).mean()) if listed.size else 0.0,
                    }
                )
        return rows

    def record(self) -> dict:
        """JSON-friendly description: mode, heads, ranks, methods, baseline pool, seed and the summary rows."""
        return {
            "mode": self.mode,
            "row_heads": self.row_heads,
            "col_heads": self.col_heads,
            "ranks": self.ranks,
            "methods": list(self.methods),
            "head_pool": self.head_pool,
            "num_samp": int(self.head_baseline.shape[-1]),
            "seed": self.seed,
            "summary": self.summary(),
        }


@torch.no_grad()
@single_threaded()
def match_subspaces(
    W_all: torch.Tensor,
    IH_list: list | None = None,
    Shifting_list: list | None = None,
    ranks: tuple[int, ...] | list[int] = (2, 3, 5, 10),
    methods: tuple[str, ...] | list[str] = METHODS,
    num_samp: int = 50,
    seed: int = 0,
    save_dir: str | Path | None = None,
    subspaces: HeadSubspaces | None = None,
    plot: bool = True,
) -> SubspaceMatching:
    """Match head subspaces: IHs only -> IH x IH (key side), shifting only -> SH x SH (output side), both -> IH x SH.

    Pass `subspaces` (from `head_subspaces`) to reuse the per-head SVDs across calls. Baselines: `num_samp`
    pairs of random Gaussian subspaces and of random distinct heads outside the lists (seeded).
    """
    check_w_all(W_all)
    ranks = [check_rank(r, W_all.shape[-1]) for r in _nonempty(ranks, "ranks")]
    methods = check_methods(methods)
    num_samp = _positive_int(num_samp, "num_samp")
    mode, (row_side, rows), (col_side, cols) = _matching_sides(W_all, IH_list, Shifting_list)
    subspaces = _usable_subspaces(W_all, subspaces, max(ranks))
    r_max = max(ranks)
    row_bases = subspaces.bases(row_side, rows)[..., :r_max]
    col_bases = subspaces.bases(col_side, cols)[..., :r_max]
    cross = torch.einsum("idr,jds->ijrs", row_bases, col_bases)
    s_match = matching_scores(cross, ranks, methods).numpy()
    rng_gauss, rng_heads = np.random.default_rng(seed).spawn(2)
    gauss = gaussian_baseline(W_all.shape[3], ranks, methods, num_samp, rng_gauss)
    pairs, pool = draw_head_pairs(W_all.shape[:2], rows + cols, num_samp, rng_heads)
    first = subspaces.bases(row_side, pairs[:, 0])[..., :r_max]
    second = subspaces.bases(col_side, pairs[:, 1])[..., :r_max]
    heads = matching_scores(first.mT @ second, ranks, methods).numpy()
    result = SubspaceMatching(mode, rows, cols, ranks, tuple(methods), s_match, gauss, heads, pairs, pool, int(seed))
    _save_subspace_matching(result, save_dir)
    if plot:
        figures = plot_subspace_matching(result)
        result.figures = {name: save_figure(fig, save_dir, name) for name, fig in figures.items()}
    return result


def subspace_matching(
    W_all: torch.Tensor,
    save_dir: str | Path | None = None,
    IH_list: list | None = None,
    Shifting_list: list | None = None,
    ranks: tuple[int, ...] | list[int] = (2, 3, 5, 10),
    methods: tuple[str, ...] | list[str] = METHODS,
    num_samp: int = 50,
    seed: int = 0,
    subspaces: HeadSubspaces | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed's call: `(s_match (M, R, K0, K1), match_baseline (M, R, num_samp))`, Gaussian baseline.

    Figures and data (with the random-head baseline) are saved when `save_dir` is given; use
    `match_subspaces` for the full result and figures.
    """
    result = match_subspaces(
        W_all, IH_list, Shifting_list, ranks, methods, num_samp, seed, save_dir, subspaces, plot=save_dir is not None
    )
    _close(result.figures)
    return result.s_match, result.gaussian_baseline


def check_methods(methods: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return `methods` as a tuple, or raise naming the allowed methods."""
    methods = tuple(_nonempty(methods, "methods"))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise IHLibError(f"Unknown matching method(s) {unknown}: choose from {', '.join(METHODS)}.")
    return methods


def _matching_sides(W_all: torch.Tensor, IH_list: list | None, Shifting_list: list | None) -> tuple:
    """Return `(mode, (row_side, row_heads), (col_side, col_heads))` for the lists given."""
    if IH_list is None and Shifting_list is None:
        raise IHLibError("Pass IH_list, Shifting_list or both: there are no heads to match.")
    if Shifting_list is None:
        heads = _nonempty_heads(W_all, IH_list, "IH_list")
        return "IH x IH", ("key", heads), ("key", heads)
    if IH_list is None:
        heads = _nonempty_heads(W_all, Shifting_list, "Shifting_list")
        return "SH x SH", ("output", heads), ("output", heads)
    return (
        "IH x SH",
        ("key", _nonempty_heads(W_all, IH_list, "IH_list")),
        ("output", _nonempty_heads(W_all, Shifting_list, "Shifting_list")),
    )


def _usable_subspaces(W_all: torch.Tensor, subspaces: HeadSubspaces | None, r_max: int) -> HeadSubspaces:
    """Return `subspaces` when it covers `W_all`'s heads up to rank `r_max`, else compute them."""
    if subspaces is None:
        return head_subspaces(W_all, r_max)
    if subspaces.W_all is not W_all or subspaces.max_rank < r_max:
        raise IHLibError(
            f"subspaces must come from this W_all with max_rank >= {r_max} (they have {subspaces.max_rank}): "
            f"build them with head_subspaces(W_all, {r_max})."
        )
    return subspaces


def _save_subspace_matching(result: SubspaceMatching, save_dir: str | Path | None) -> None:
    """Save scores and both baselines (NPZ) and the record (JSON) when `save_dir` is given."""
    save_arrays(
        save_dir,
        "subspace_matching",
        s_match=result.s_match,
        gaussian_baseline=result.gaussian_baseline,
        head_baseline=result.head_baseline,
        head_baseline_pairs=result.head_baseline_pairs,
        percentiles_heads=result.percentiles("heads"),
        ranks=np.array(result.ranks),
        row_heads=np.array(result.row_heads),
        col_heads=np.array(result.col_heads),
    )
    save_json(save_dir, "subspace_matching", result.record())


# ---------------------------------------------------------------- tables and verdicts for the chapters


SEED_Z_THRESHOLD = 2.0  # the seed's rule of thumb: z > 2 means "large diagonal"
CHANCE_ABOVE_Q95 = 0.05  # share of baseline-like pairs above the baseline's 95th percentile
SCORE_KINDS = {"IH_list": "induction", "Shifting_list": "shifting"}


def listed_heads_table(
    scores: HeadScores, baseline: dict[str, float], IH_list: list, Shifting_list: list
) -> pd.DataFrame:
    """One row per listed head: both scores and the own-kind score over the uniform-attention `baseline`.

    Index `(list, position)`; `baseline` is `uniform_head_scores(...)` (keys "induction", "shifting").
    """
    rows = []
    for name, heads in (("IH_list", IH_list), ("Shifting_list", Shifting_list)):
        kind = SCORE_KINDS[name]
        for position, (layer, head) in enumerate(heads, start=1):
            rows.append(
                {
                    "list": name,
                    "position": position,
                    "head": head_label(layer, head),
                    "induction score": float(scores.induction[layer, head]),
                    "shifting score": float(scores.shifting[layer, head]),
                    "× uniform baseline (own kind)": float(getattr(scores, kind)[layer, head]) / baseline[kind],
                }
            )
    return pd.DataFrame(rows).set_index(["list", "position"]).round(3)


def zscore_table(result: QKOVZScores, top: int | None = None) -> pd.DataFrame:
    """Listed `(IH, SH)` pairs by decreasing z-score (the first `top`, default all) with their baseline percentile."""
    percentiles = result.percentiles
    rows = [
        {
            "IH": head_label(*ih),
            "SH": head_label(*sh),
            "SH in an earlier layer": bool(result.composable[i, j]),
            "z": float(result.zscores[i, j]),
            "percentile among random pairs": float(percentiles[i, j]),
        }
        for i, ih in enumerate(result.IH_list)
        for j, sh in enumerate(result.Shifting_list)
    ]
    table = pd.DataFrame(rows).sort_values("z", ascending=False, kind="stable").reset_index(drop=True)
    table.index += 1
    return table.head(top).round(2) if top is not None else table.round(2)


def zscore_overview(result: QKOVZScores) -> pd.DataFrame:
    """Distribution summary of z-scores: composable listed pairs, all listed pairs, random head pairs (baseline)."""
    groups = {
        "listed pairs, SH in an earlier layer": result.zscores[result.composable],
        "all listed pairs": result.zscores.ravel(),
        "random head pairs (baseline)": result.baseline,
    }
    return (
        pd.DataFrame([_distribution_row(name, values) for name, values in groups.items()]).set_index("pairs").round(2)
    )


def _distribution_row(name: str, values: np.ndarray) -> dict:
    """Count, median, 5th / 95th percentiles, max and share above the seed's z > 2 rule of `values`."""
    if values.size == 0:
        return {"pairs": name, "n": 0}
    low, median, high = np.percentile(values, [5, 50, 95])
    return {
        "pairs": name,
        "n": int(values.size),
        "median": median,
        "5th pct": low,
        "95th pct": high,
        "max": float(values.max()),
        "share z > 2": float((values > SEED_Z_THRESHOLD).mean()),
    }


def qkov_verdict(result: QKOVZScores, save_dir: str | Path | None = None) -> Verdict:
    """Claim 1 judged on composable listed pairs (SH below IH) against the random-head-pair baseline.

    Supported: their median z is above the baseline's 95th percentile; partly: more pairs are above it than
    chance explains (binomial tail `P(Binomial(n, 0.05) >= count) < 0.05`); not supported: otherwise (with a
    note when the median is even below the baseline's 5th percentile).
    """
    listed = result.zscores[result.composable]
    low, median_random, high = np.percentile(result.baseline, [5, 50, 95])
    claim = "Claim 1 (large diagonal of W_qk W_ov)"
    if listed.size == 0:
        verdict = Verdict(
            claim,
            "not tested",
            "No listed shifting head sits in an earlier layer than a listed IH, so no listed pair can compose: "
            "list more heads (K0, K1).",
        )
        save_json(save_dir, "verdict", verdict.record())
        return verdict
    n, median, above = listed.size, float(np.median(listed)), int((listed > high).sum())
    chance = binomial_tail(above, n, CHANCE_ABOVE_Q95)
    evidence = (
        f"Of the {n} listed pairs whose shifting head sits in an earlier layer than the IH, {above} have a "
        f"diagonal z-score above the 95th percentile of random head pairs ({high:.2f})"
    )
    if above > 0:
        evidence += (
            f"; pairs like random ones would give about {CHANCE_ABOVE_Q95 * n:.1f} (probability of {above} or more "
            f"by chance: {chance:.2g})"
        )
    evidence += f". Their median z is {median:.2f}, against {median_random:.2f} for random pairs."
    if median > high:
        label = "supported"
    elif above > 0 and chance < CHANCE_ABOVE_Q95:
        label = "partly supported"
    else:
        label = "not supported"
    if median < low:
        evidence += (
            f" The median is even below the random pairs' 5th percentile ({low:.2f}): on average these diagonals are "
            "smaller than those of random head pairs, the opposite of the claim."
        )
    seed_rule = int((listed > SEED_Z_THRESHOLD).sum())
    evidence += f" By the seed's rule without a baseline (z > 2), {seed_rule} of the {n} pairs would count."
    verdict = Verdict(claim, label, evidence)
    save_json(save_dir, "verdict", verdict.record())
    return verdict


def binomial_tail(k: int, n: int, p: float) -> float:
    """Return `P(Binomial(n, p) >= k)`: the chance of `k` or more successes in `n` independent trials."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)))


def matching_table(results: list[SubspaceMatching]) -> pd.DataFrame:
    """One row per comparison, score and rank: listed median, both baselines' 95th percentiles, and how to read it.

    `percentile in random heads` is the percentage of random-head pairs scoring at or below the listed median.
    """
    rows = []
    for result in results:
        for row in result.summary():
            heads = result.head_baseline[result.methods.index(row["method"]), result.ranks.index(row["rank"])]
            rows.append(
                {
                    "comparison": result.mode,
                    "score": row["method"],
                    "rank": row["rank"],
                    "listed median": row["listed_median"],
                    "random heads 95th": row["heads_q95"],
                    "Gaussian 95th": row["gaussian_q95"],
                    "percentile in random heads": float(percentile_of(np.array(row["listed_median"]), heads)),
                    "reading": _matching_reading(row),
                }
            )
    return pd.DataFrame(rows).set_index("comparison").round(3)


def _matching_reading(row: dict) -> str:
    """Classify a summary row: listed median above both baselines' 95th percentiles, above the Gaussian only, or not."""
    if np.isnan(row["listed_median"]):
        return "no listed pairs"
    if row["listed_median"] > max(row["heads_q95"], row["gaussian_q95"]):
        return "above both baselines"
    if row["listed_median"] > row["gaussian_q95"]:
        return "above Gaussian only"
    if row["listed_median"] > row["heads_q95"]:
        return "above random heads only"
    return "within the baselines"


def matching_verdict(results: list[SubspaceMatching], save_dir: str | Path | None = None) -> Verdict:
    """Claim 2 judged per comparison by how many (method, rank) settings put the listed median above each baseline.

    Supported: "IH x SH" (and "IH x IH" when given) above the random-heads 95th percentile in at least half the
    settings; partly: one of them above it somewhere, or "IH x SH" above the Gaussian one in half; else not.
    "SH x SH" is reported, not judged.
    """
    counts = {result.mode: _settings_above(result) for result in results}
    lines = [
        f"{mode}: the listed median is above the random-heads 95th percentile in {heads} of {n} (score, rank) "
        f"settings, above the Gaussian one in {gauss} of {n}."
        for mode, (heads, gauss, n) in counts.items()
    ]
    required = [mode for mode in ("IH x SH", "IH x IH") if mode in counts]
    if required and all(2 * counts[mode][0] >= counts[mode][2] for mode in required):
        label = "supported"
    elif any(counts[mode][0] > 0 for mode in required) or (
        "IH x SH" in counts and 2 * counts["IH x SH"][1] >= counts["IH x SH"][2]
    ):
        label = "partly supported"
    else:
        label = "not supported"
    basis = "Judged on " + " and ".join(required) if required else "No IH x SH or IH x IH comparison given"
    verdict = Verdict("Claim 2 (common subspace)", label, f"{basis}; per comparison:", lines)
    save_json(save_dir, "verdict", verdict.record())
    return verdict


def _settings_above(result: SubspaceMatching) -> tuple[int, int, int]:
    """(settings above random heads' 95th, above Gaussian 95th, all settings) for the listed median."""
    rows = [row for row in result.summary() if not np.isnan(row["listed_median"])]
    heads = sum(row["listed_median"] > row["heads_q95"] for row in rows)
    gauss = sum(row["listed_median"] > row["gaussian_q95"] for row in rows)
    return int(heads), int(gauss), len(result.summary())


def energy_profile(subspaces: HeadSubspaces, side: str, heads: list | np.ndarray) -> np.ndarray:
    """Cumulative share of squared singular values, `(n, d_head)`: column r-1 is the share the top r directions hold.

    Needs `subspaces` with every singular value (`head_subspaces(W_all)`, max_rank = d_head).
    """
    d_head = subspaces.W_all.shape[-1]
    if subspaces.max_rank < d_head:
        raise IHLibError(
            f"energy_profile needs all {d_head} singular values, the subspaces keep {subspaces.max_rank}: "
            "build them with head_subspaces(W_all)."
        )
    squared = subspaces.values(side, heads).numpy() ** 2
    return np.cumsum(squared, axis=-1) / squared.sum(-1, keepdims=True)


def head_spectra(
    subspaces: HeadSubspaces,
    IH_list: list,
    Shifting_list: list,
    ranks: list[int] | tuple[int, ...] = (2, 3, 5, 10),
    save_dir: str | Path | None = None,
) -> plt.Figure:
    """Energy profiles of the listed IHs' `W_qk` and shifting heads' `W_ov` against all heads of the model.

    Saves the profiles `(n, d_head)` (NPZ) when `save_dir` is given and returns the figure (ranks marked).
    """
    n_layer, n_head = subspaces.W_all.shape[:2]
    everyone = [[l, h] for l in range(n_layer) for h in range(n_head)]
    IH_list = _nonempty_heads(subspaces.W_all, IH_list, "IH_list")
    Shifting_list = _nonempty_heads(subspaces.W_all, Shifting_list, "Shifting_list")
    panels = {
        "key": (energy_profile(subspaces, "key", IH_list), energy_profile(subspaces, "key", everyone), IH_list),
        "output": (
            energy_profile(subspaces, "output", Shifting_list),
            energy_profile(subspaces, "output", everyone),
            Shifting_list,
        ),
    }
    save_arrays(
        save_dir,
        "energy_profiles",
        **{f"{side}_listed": listed for side, (listed, _, _) in panels.items()},
        **{f"{side}_all_heads": every for side, (_, every, _) in panels.items()},
    )
    return save_figure(plot_energy_profiles(panels, list(ranks)), save_dir, "energy_profiles")


# ---------------------------------------------------------------- input checks


def _nonempty(values: object, name: str) -> list:
    """Return `values` as a list, or raise when it is empty."""
    values = list(values) if values is not None else []
    if not values:
        raise IHLibError(f"{name} is empty: pass at least one entry.")
    return values


def _nonempty_heads(W_all: torch.Tensor, heads: list | None, name: str) -> list[list[int]]:
    """Validate a non-empty list of `[layer, head]` pairs; return it as plain ints."""
    return check_heads(W_all, _nonempty(heads, name), name)


def _positive_int(value: int, name: str) -> int:
    """Return `value` as int, or raise when it is below 1."""
    if int(value) < 1:
        raise IHLibError(f"{name} must be at least 1, got {value}.")
    return int(value)


def _close(figures: dict[str, plt.Figure]) -> None:
    """Close figures that are saved but not returned."""
    for fig in figures.values():
        plt.close(fig)
