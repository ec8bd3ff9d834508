"""Claim 1: the diagonal of `W_qkov = W_qk(IH) W_ov(shifting head)` is large, against random head pairs.

Everything stays in factored form (DESIGN.md section 2): the diagonal z-score of `W_qkov = A C B^T`
(`A = W_q`, `C = W_k^T W_o`, `B = W_v`) comes from `d_head x d_head` Gram matrices, `d x d` never formed.
Diagonal z-score of `M`: `(mean(diag M) - mean(M)) / std(M)`, population std. Beside it, with the same
controls (`controls`): the K-composition score of Elhage et al. (2021), `||W_qk W_ov||_F / (||W_qk||_F ||W_ov||_F)`,
and the token-basis rate: how often token t's own column wins row t of `W_E W_qk W_ov W_E^T` (query token t,
source token s). Layer norms and biases are left out throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.controls import PairGroup, cross_groups, draw_pairs
from ihlib.errors import IHLibError
from ihlib.factored import single_threaded
from ihlib.heads import check_heads, head_labels
from ihlib.stats import BOOTSTRAP_SAMPLES, Effect, effects_label, head_bootstrap_effect, percentile_of
from ihlib.weights import K, O, Q, V, check_w_all

Z_CHUNK = 64  # head pairs per batched z-score step
TOKEN_CHUNK = 1024  # query tokens per step of the token-basis circuit
MAX_TOKENS = 4096  # the token-basis rate uses at most this many tokens (a seeded sample of a larger vocabulary)
SEED_Z_THRESHOLD = 2.0  # the seed's rule of thumb: z > 2 means "large diagonal"
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
    W_all: torch.Tensor,
    IH_list: list,
    Shifting_list: list,
    *,
    num_samp: int = 500,
    seed: int = 0,
    exclude: list | tuple = (),
) -> QKOVZScores:
    """Diagonal z-scores of `W_qk(IH) @ W_ov(SH)` for every listed pair and for up to `num_samp` random head pairs.

    Baseline pairs are distinct pairs that can compose (OV head in an earlier layer than the QK head) of heads
    outside both lists and `exclude`, drawn without replacement (seeded); percentiles place each listed pair
    within that baseline. `composable` marks SH layer < IH layer.
    """
    check_w_all(W_all)
    shape = tuple(W_all.shape[:2])
    IH_list = check_heads(IH_list, shape, name="IH_list")
    Shifting_list = check_heads(Shifting_list, shape, name="Shifting_list")
    num_samp = _positive_int(num_samp, "num_samp")
    exclude = check_heads(list(exclude), shape, name="exclude", nonempty=False)
    zscores = qkov_zscore_grid(W_all, IH_list, Shifting_list)
    composable = np.array([[sh[0] < ih[0] for sh in Shifting_list] for ih in IH_list])
    group = cross_groups(shape, IH_list, Shifting_list, exclude)["random composable"]
    if not group.exists:
        raise IHLibError(f"No random-pair baseline on this model: the random composable pairs {group.note}.")
    pairs, pool = draw_pairs(group, num_samp, np.random.default_rng(seed))
    baseline = qkov_zscore_pairs(W_all, pairs[:, 0].tolist(), pairs[:, 1].tolist())
    return QKOVZScores(IH_list, Shifting_list, zscores, composable, baseline, pairs, pool, int(seed))


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


@dataclass
class DiagonalControls:
    """Claim 1's statistics for the listed pairs and each control group, and their effects.

    `values[stat][group]` is a grid `(len(rows), len(cols))` of the group (NaN outside its mask); `effects[stat]`
    maps each control group that exists to the listed pairs' `Effect` over it (heads resampled, not pairs).
    """

    IH_list: list[list[int]]
    Shifting_list: list[list[int]]
    groups: dict[str, PairGroup]
    values: dict[str, dict[str, np.ndarray]]
    effects: dict[str, dict[str, Effect]]
    token_count: int | None
    n_boot: int
    seed: int
    name = "diagonal_controls"

    @property
    def statistics(self) -> list[str]:
        """The statistics computed (those of `STATISTICS` that the inputs allow)."""
        return list(self.values)

    def record(self) -> dict:
        """JSON-friendly: groups, effects per statistic and control, tokens used, resamples, seed."""
        return {
            "IH_list": self.IH_list,
            "Shifting_list": self.Shifting_list,
            "groups": {name: group.record() for name, group in self.groups.items()},
            "effects": {
                stat: {control: effect.record() for control, effect in effects.items()}
                for stat, effects in self.effects.items()
            },
            "token_count": self.token_count,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every grid, named `{statistic}__{group}`, for the NPZ file."""
        return {
            f"{stat}__{group.replace(' ', '_')}": grid
            for stat, grids in self.values.items()
            for group, grid in grids.items()
        }


def _group_grids(
    W_all: torch.Tensor, group: PairGroup, W_E: torch.Tensor | np.ndarray | None, max_tokens: int, seed: int
) -> dict[str, np.ndarray]:
    """Statistic grids of one group: each statistic on the group's mask, NaN elsewhere."""
    pairs = group.pairs()
    values = pair_statistics(
        W_all, [p[0] for p in pairs], [p[1] for p in pairs], W_E=W_E, max_tokens=max_tokens, seed=seed
    )
    mask = np.triu(group.mask, 1) if group.symmetric else group.mask
    grids = {}
    for stat, column in values.items():
        grid = np.full(group.mask.shape, np.nan)
        grid[mask] = column
        grids[stat] = np.where(np.isnan(grid), grid.T, grid) if group.symmetric else grid
    return grids


def diagonal_controls(
    W_all: torch.Tensor,
    IH_list: list,
    Shifting_list: list,
    *,
    exclude: list | tuple = (),
    W_E: torch.Tensor | np.ndarray | None = None,
    max_tokens: int = MAX_TOKENS,
    n_boot: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> DiagonalControls:
    """Claim 1 against controls that can fail (`controls.cross_groups`): every statistic on every pair of each group.

    `exclude`: heads no control may use (e.g. every head that counts as an IH or shifting head). Effects of the
    listed pairs over each existing control come from resampling heads (`stats.head_bootstrap_effect`).
    """
    check_w_all(W_all)
    shape = tuple(W_all.shape[:2])
    IH_list = check_heads(IH_list, shape, name="IH_list")
    Shifting_list = check_heads(Shifting_list, shape, name="Shifting_list")
    exclude = check_heads(list(exclude), shape, name="exclude", nonempty=False)
    groups = cross_groups(shape, IH_list, Shifting_list, exclude)
    grids = {name: _group_grids(W_all, g, W_E, max_tokens, seed) for name, g in groups.items() if g.exists}
    statistics = list(next(iter(grids.values()))) if grids else ["z", "k_composition"]
    values = {stat: {name: g[stat] for name, g in grids.items()} for stat in statistics}
    effects: dict[str, dict[str, Effect]] = {stat: {} for stat in statistics}
    if groups["listed"].exists:
        listed = groups["listed"]
        for stat in statistics:
            for name, group in groups.items():
                if name != "listed" and group.exists:
                    effects[stat][name] = head_bootstrap_effect(
                        name,
                        (values[stat]["listed"], listed.mask, False),
                        (values[stat][name], group.mask, group.symmetric),
                        n_boot=n_boot,
                        seed=seed,
                    )
    token_count = min(int(np.shape(W_E)[0]), max_tokens) if W_E is not None else None
    return DiagonalControls(IH_list, Shifting_list, groups, values, effects, token_count, int(n_boot), int(seed))


@dataclass(frozen=True)
class DiagonalJudgement:
    """Claim 1's rule on the diagonal z-score: the label, the effects it rests on, and the controls that are absent."""

    label: str
    statistic: str
    effects: dict[str, Effect]
    absent: dict[str, str]
    n_pairs: int


def judge_diagonal(result: DiagonalControls, *, statistic: str = "z") -> DiagonalJudgement:
    """Claim 1 on the listed pairs that can compose, judged on `statistic` against every control that exists.

    Supported: against every control the difference of means has a head-resampled 95% interval above 0 and is
    large (Cohen's d >= 0.8); partly: only against random composable pairs is the interval above 0; not
    supported: otherwise; not tested: no listed pair can compose (or no random composable pair exists).
    """
    absent = {name: group.note for name, group in result.groups.items() if not group.exists and name != "listed"}
    effects = result.effects.get(statistic, {})
    n_pairs = result.groups["listed"].n_pairs
    label = effects_label(effects, "random composable") if n_pairs else "not tested"
    return DiagonalJudgement(label, statistic, effects, absent, n_pairs)
