"""Claim 1: the diagonal of `W_qkov = W_qk(IH) W_ov(shifting head)` is large, against random head pairs.

The circuit algebra lives in `circuits` (factored, batched); here are the claim's experiments: blocks of
`W_qkov` to look at, z-scores against random composable pairs, and every statistic of `circuits.STATISTICS`
against the control groups of `controls` (`diagonal_controls`), judged by `judge_diagonal`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.circuits import (
    MAX_TOKENS,
    embedding_basis,
    factored_diagonal_zscore,
    pair_statistics,
    qkov_factors,
    qkov_zscore_grid,
    qkov_zscore_pairs,
)
from ihlib.core.control_groups import PairGroup, cross_groups, draw_pairs, sampled_group
from ihlib.core.factored import single_threaded
from ihlib.core.stats import BOOTSTRAP_SAMPLES, Effect, effects_label, head_bootstrap_effect, percentile_of
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_heads, head_labels
from ihlib.model.validation import integer, seed_value
from ihlib.model.weights import check_w_all

MAX_RANDOM_PAIRS = 500  # random composable pairs drawn for claim 1's baseline (as chapter 2's num_samp)

SEED_Z_THRESHOLD = 2.0  # the seed's rule of thumb: z > 2 means "large diagonal"


def _positive_int(value: int, name: str) -> int:
    """Return `value` as an int of at least 1 (2.0 counts as 2; 2.7 is refused), or raise naming `name`."""
    return integer(value, name, low=1)


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
    seed = seed_value(seed)
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
    max_random_pairs: int | None = MAX_RANDOM_PAIRS,
    seed: int = 0,
) -> DiagonalControls:
    """Claim 1 against controls that can fail (`controls.cross_groups`): every statistic on every pair of each group.

    `exclude`: heads no control may use (e.g. every head that counts as an IH or shifting head). The "random
    composable" group keeps `max_random_pairs` of its pairs, drawn with `seed` (None: all; GPT-2-small has ~9,500).
    Effects of the listed pairs over each existing control come from resampling heads (`stats.head_bootstrap_effect`).
    """
    n_boot, seed = integer(n_boot, "n_boot", low=1), seed_value(seed)
    max_tokens = integer(max_tokens, "max_tokens", low=1)
    if max_random_pairs is not None:
        max_random_pairs = integer(max_random_pairs, "max_random_pairs", low=1)
    check_w_all(W_all)
    shape = tuple(W_all.shape[:2])
    IH_list = check_heads(IH_list, shape, name="IH_list")
    Shifting_list = check_heads(Shifting_list, shape, name="Shifting_list")
    exclude = check_heads(list(exclude), shape, name="exclude", nonempty=False)
    groups = cross_groups(shape, IH_list, Shifting_list, exclude)
    random = sampled_group(groups["random composable"], max_random_pairs, np.random.default_rng([seed, 11]))
    groups = groups | {"random composable": random}
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
