"""Claim 2: induction heads read (key side of `W_qk`) where shifting heads write (output side of `W_ov`).

Matching of orthonormal bases `A0, A1` uses the singular values `s` of `A0^T A1` (cosines of principal
angles): `largest = s[0]`, `mean = sqrt(mean(s**2))`. Per-head bases come from `factored.head_subspaces`
(one batched pass over all heads); baselines: random Gaussian subspaces and random heads of the same model
(pairs that can compose for IH x SH). The verdict uses `subspace_controls`: one number per pair (the "mean" score
averaged over the ranks compared) against control groups that can fail (`controls`), heads resampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.control_groups import PairGroup, cross_groups, draw_pairs, self_groups
from ihlib.core.factored import HeadSubspaces, check_rank, random_orthonormal, single_threaded
from ihlib.core.stats import BOOTSTRAP_SAMPLES, Effect, effects_label, head_bootstrap_effect, percentile_of
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import all_heads, check_heads
from ihlib.model.validation import integer, seed_value

METHODS = ("largest", "mean")
MODES = {"IH x IH": ("key", "key"), "SH x SH": ("output", "output"), "IH x SH": ("key", "output")}


def check_methods(methods: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return `methods` as a non-empty tuple, or raise naming the allowed methods."""
    methods = tuple(methods or ())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise IHLibError(f"methods must be a non-empty list from {METHODS}, got {list(methods)}.")
    return methods


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
    is the top `r x r` block of a random orthonormal basis `d_model x r_max`; its first r columns span the
    first r Gaussian columns, so every rank is uniformly distributed.
    """
    r_max = max(ranks)
    bases = random_orthonormal(rng, d_model, r_max, num_samp)
    return matching_scores(bases[:, :r_max, :], ranks, methods).numpy()


@dataclass
class SubspaceMatching:
    """Scores `s_match (M, R, K0, K1)` of row vs column heads, and two baselines `(M, R, N)`.

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
    name = "subspace_matching"

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

    def arrays(self) -> dict[str, np.ndarray]:
        """Scores, both baselines, percentiles and heads, for the NPZ file."""
        return {
            "s_match": self.s_match,
            "gaussian_baseline": self.gaussian_baseline,
            "head_baseline": self.head_baseline,
            "head_baseline_pairs": self.head_baseline_pairs,
            "percentiles_heads": self.percentiles("heads"),
            "ranks": np.array(self.ranks),
            "row_heads": np.array(self.row_heads),
            "col_heads": np.array(self.col_heads),
        }


def _matching_sides(shape: tuple[int, int], IH_list: list | None, Shifting_list: list | None) -> tuple:
    """Return `(mode, row_heads, col_heads)` for the lists given."""
    if IH_list is None and Shifting_list is None:
        raise IHLibError("Pass IH_list, Shifting_list or both: there are no heads to match.")
    if Shifting_list is None:
        heads = check_heads(IH_list, shape, name="IH_list")
        return "IH x IH", heads, heads
    if IH_list is None:
        heads = check_heads(Shifting_list, shape, name="Shifting_list")
        return "SH x SH", heads, heads
    return (
        "IH x SH",
        check_heads(IH_list, shape, name="IH_list"),
        check_heads(Shifting_list, shape, name="Shifting_list"),
    )


@torch.no_grad()
@single_threaded()
def match_subspaces(
    subspaces: HeadSubspaces,
    *,
    IH_list: list | None = None,
    Shifting_list: list | None = None,
    ranks: tuple[int, ...] | list[int] = (2, 3, 5, 10),
    methods: tuple[str, ...] | list[str] = METHODS,
    num_samp: int = 50,
    seed: int = 0,
    exclude: list | tuple = (),
) -> SubspaceMatching:
    """Match head subspaces: IHs only -> IH x IH (key side), shifting only -> SH x SH (output side), both -> IH x SH.

    `subspaces` from `factored.head_subspaces(W_all, max(ranks))` or more. Baselines: `num_samp` pairs of
    random Gaussian subspaces, and up to `num_samp` distinct pairs of heads outside the lists and `exclude`,
    drawn without replacement (seeded); for IH x SH only pairs that can compose (output head in an earlier layer).
    """
    num_samp, seed = integer(num_samp, "num_samp", low=1), seed_value(seed)
    if not ranks:
        raise IHLibError("ranks is empty: pass at least one rank.")
    ranks = [check_rank(r, subspaces.max_rank) for r in ranks]
    methods = check_methods(methods)
    if int(num_samp) < 1:
        raise IHLibError(f"num_samp must be at least 1, got {num_samp}.")
    mode, rows, cols = _matching_sides(subspaces.shape, IH_list, Shifting_list)
    row_side, col_side = MODES[mode]
    r_max = max(ranks)
    row_bases = subspaces.bases(row_side, rows)[..., :r_max]
    col_bases = subspaces.bases(col_side, cols)[..., :r_max]
    cross = torch.einsum("idr,jds->ijrs", row_bases, col_bases)
    s_match = matching_scores(cross, ranks, methods).numpy()
    rng_gauss, rng_heads = np.random.default_rng(seed).spawn(2)
    gauss = gaussian_baseline(subspaces.d_model, ranks, methods, int(num_samp), rng_gauss)
    group = _random_group(subspaces.shape, mode, rows, cols, list(exclude))
    if not group.exists:
        raise IHLibError(f"No random-head baseline for {mode} on this model: the group {group.note}.")
    pairs, pool = draw_pairs(group, int(num_samp), rng_heads)
    first = subspaces.bases(row_side, pairs[:, 0])[..., :r_max]
    second = subspaces.bases(col_side, pairs[:, 1])[..., :r_max]
    heads = matching_scores(first.mT @ second, ranks, methods).numpy()
    return SubspaceMatching(mode, rows, cols, ranks, methods, s_match, gauss, heads, pairs, pool, int(seed))


def _random_group(shape: tuple[int, int], mode: str, rows: list, cols: list, exclude: list) -> PairGroup:
    """The random-heads group of a comparison: composable pairs for IH x SH, distinct pairs otherwise."""
    if mode == "IH x SH":
        return cross_groups(shape, rows, cols, exclude)["random composable"]
    return self_groups(shape, rows, exclude, "listed")["random"]


def energy_profile(subspaces: HeadSubspaces, side: str, heads: list | np.ndarray) -> np.ndarray:
    """Cumulative share of squared singular values, `(n, d_head)`: column r-1 is the share the top r directions hold.

    Needs `subspaces` with every singular value (`head_subspaces(W_all)`, max_rank = d_head).
    """
    squared = subspaces.values(side, heads).numpy() ** 2
    return np.cumsum(squared, axis=-1) / squared.sum(-1, keepdims=True)


@dataclass
class HeadSpectra:
    """Energy profiles `(n, d_head)` of listed IHs' `W_qk` ("key"), shifting heads' `W_ov` ("output") and all heads."""

    listed: dict[str, np.ndarray]
    everyone: dict[str, np.ndarray]
    heads: dict[str, list[list[int]]]
    ranks: list[int]
    name = "energy_profiles"

    def record(self) -> dict:
        """JSON-friendly description: the listed heads per side and the ranks marked."""
        return {"heads": self.heads, "ranks": self.ranks}

    def arrays(self) -> dict[str, np.ndarray]:
        """Profiles of the listed heads and of all heads per side, for the NPZ file."""
        return {f"{side}_listed": v for side, v in self.listed.items()} | {
            f"{side}_all_heads": v for side, v in self.everyone.items()
        }


def head_spectra(
    subspaces: HeadSubspaces, IH_list: list, Shifting_list: list, *, ranks: list[int] | tuple[int, ...] = (2, 3, 5, 10)
) -> HeadSpectra:
    """Energy profiles of the listed IHs' `W_qk` and shifting heads' `W_ov` against all heads of the model."""
    if subspaces.max_rank < subspaces.d_head:
        raise IHLibError(
            f"head_spectra needs all {subspaces.d_head} singular values, the subspaces keep {subspaces.max_rank}: "
            "build them with head_subspaces(W_all)."
        )
    heads = {
        "key": check_heads(IH_list, subspaces.shape, name="IH_list"),
        "output": check_heads(Shifting_list, subspaces.shape, name="Shifting_list"),
    }
    everyone = all_heads(subspaces.shape)
    listed = {side: energy_profile(subspaces, side, h) for side, h in heads.items()}
    every = {side: energy_profile(subspaces, side, everyone) for side in heads}
    return HeadSpectra(listed, every, heads, list(ranks))


def matching_reading(row: dict) -> str:
    """Place a summary row's listed median: above both baselines' 95th percentiles, above one of them, or within."""
    if np.isnan(row["listed_median"]):
        return "no listed pairs"
    if row["listed_median"] > max(row["heads_q95"], row["gaussian_q95"]):
        return "above both baselines"
    if row["listed_median"] > row["gaussian_q95"]:
        return "above Gaussian only"
    if row["listed_median"] > row["heads_q95"]:
        return "above random heads only"
    return "within the baselines"


JUDGED = "mean score, averaged over ranks"
PRIMARY_CONTROL = {"IH x SH": "random composable", "IH x IH": "random", "SH x SH": "random"}


@dataclass
class SubspaceControls:
    """One comparison against its control groups: per-pair grids and the listed pairs' effects over each control.

    `values[statistic][group]` is a grid `(len(rows), len(cols))`, NaN outside the group's mask; statistics are the
    "mean" score at each rank (`"mean@r"`) and `JUDGED`, its average over the ranks (one number per pair).
    """

    mode: str
    groups: dict[str, PairGroup]
    ranks: list[int]
    values: dict[str, dict[str, np.ndarray]]
    effects: dict[str, dict[str, Effect]]
    n_boot: int
    seed: int
    name = "subspace_controls"

    def record(self) -> dict:
        """JSON-friendly: mode, groups, ranks and effects per statistic and control."""
        return {
            "mode": self.mode,
            "groups": {name: group.record() for name, group in self.groups.items()},
            "ranks": self.ranks,
            "effects": {s: {c: e.record() for c, e in effects.items()} for s, effects in self.effects.items()},
            "n_boot": self.n_boot,
            "seed": self.seed,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every grid, named `{statistic}__{group}`, for the NPZ file."""
        return {
            f"{stat}__{group}".replace(" ", "_").replace(",", ""): grid
            for stat, grids in self.values.items()
            for group, grid in grids.items()
        }


def _group_scores(subspaces: HeadSubspaces, group: PairGroup, sides: tuple[str, str], ranks: list[int]) -> np.ndarray:
    """The "mean" score `(R, n_rows, n_cols)` of every pair of a group's grid (all cells; masked later)."""
    r_max = max(ranks)
    rows = subspaces.bases(sides[0], group.rows)[..., :r_max]
    cols = subspaces.bases(sides[1], group.cols)[..., :r_max]
    cross = torch.einsum("idr,jds->ijrs", rows, cols)
    return matching_scores(cross, ranks, ("mean",))[0].numpy()


@torch.no_grad()
@single_threaded()
def subspace_controls(
    subspaces: HeadSubspaces,
    *,
    IH_list: list | None = None,
    Shifting_list: list | None = None,
    ranks: tuple[int, ...] | list[int] = (2, 3, 5, 10),
    exclude: list | tuple = (),
    n_boot: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> SubspaceControls:
    """Claim 2 for one comparison (as in `match_subspaces`) against the control groups of `controls`.

    IH x SH: random composable pairs, same layers, specificity (IHs x the non-shifting heads of the shifting
    heads' layers); IH x IH and SH x SH: random pairs and same layers. `exclude`: heads no control may use.
    """
    n_boot, seed = integer(n_boot, "n_boot", low=1), seed_value(seed)
    if not ranks:
        raise IHLibError("ranks is empty: pass at least one rank.")
    ranks = [check_rank(r, subspaces.max_rank) for r in ranks]
    mode, rows, cols = _matching_sides(subspaces.shape, IH_list, Shifting_list)
    exclude = check_heads(list(exclude), subspaces.shape, name="exclude", nonempty=False)
    if mode == "IH x SH":
        groups = cross_groups(subspaces.shape, rows, cols, exclude)
    else:
        groups = self_groups(subspaces.shape, rows, exclude, "induction" if mode == "IH x IH" else "shifting")
    values: dict[str, dict[str, np.ndarray]] = {f"mean@{r}": {} for r in ranks} | {JUDGED: {}}
    for name, group in groups.items():
        if group.exists:
            scores = np.where(group.mask, _group_scores(subspaces, group, MODES[mode], ranks), np.nan)
            for i, r in enumerate(ranks):
                values[f"mean@{r}"][name] = scores[i]
            values[JUDGED][name] = scores.mean(0)
    effects: dict[str, dict[str, Effect]] = {stat: {} for stat in values}
    listed = groups["listed"]
    if listed.exists:
        for stat, grids in values.items():
            for name, group in groups.items():
                if name != "listed" and group.exists:
                    effects[stat][name] = head_bootstrap_effect(
                        name,
                        (grids["listed"], listed.mask, listed.symmetric),
                        (grids[name], group.mask, group.symmetric),
                        n_boot=n_boot,
                        seed=seed,
                    )
    return SubspaceControls(mode, groups, ranks, values, effects, int(n_boot), int(seed))


@dataclass(frozen=True)
class ControlsJudgement:
    """Claim 2's rule on `JUDGED` per comparison: the overall label, the label and effects of each comparison."""

    label: str
    labels: dict[str, str]
    effects: dict[str, dict[str, Effect]]
    absent: dict[str, dict[str, str]]


def judge_subspace_controls(results: list[SubspaceControls]) -> ControlsJudgement:
    """Claim 2 judged on one number per pair (`JUDGED`), so that correlated (score, rank) settings count once.

    Per comparison (`stats.effects_label`): supported when against every existing control the head-resampled
    95% interval of the difference lies above 0 and Cohen's d >= 0.8; partly when only the random-heads control
    is beaten (interval above 0); not supported otherwise. Overall: supported when IH x SH and IH x IH (those
    given) are supported; partly when either is supported or partly; not supported otherwise. SH x SH is reported.
    """
    labels, effects, absent = {}, {}, {}
    for result in results:
        effects[result.mode] = result.effects[JUDGED]
        absent[result.mode] = {n: g.note for n, g in result.groups.items() if not g.exists and n != "listed"}
        labels[result.mode] = effects_label(result.effects[JUDGED], PRIMARY_CONTROL[result.mode])
    required = [mode for mode in ("IH x SH", "IH x IH") if mode in labels]
    found = [labels[mode] for mode in required]
    if found and all(label == "supported" for label in found):
        label = "supported"
    elif any(label in ("supported", "partly supported") for label in found):
        label = "partly supported"
    elif found and all(label == "not tested" for label in found):
        label = "not tested"
    else:
        label = "not supported"
    return ControlsJudgement(label, labels, effects, absent)
