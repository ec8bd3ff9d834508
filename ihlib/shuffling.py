"""Claim 3: shuffling the QK (OV) components among induction (shifting) heads barely hurts copying; random heads do.

Each repetition of the copying test (`copying.CopyingSettings`) scores the unedited model, a fresh
derangement of the heads' components among themselves ("shuffle") and fresh random heads' components
("random baseline"), all on the same batch. Experiments take the heads they are given and score no heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.copying import CopyingSettings, by_position, condition_summary, per_repetition, pred_probs
from ihlib.edits import EXCHANGE_KINDS, check_component, exchange_edit, model_heads, random_candidates
from ihlib.errors import IHLibError
from ihlib.heads import check_k
from ihlib.models import AnyGPT2
from ihlib.stats import at, mean_ci, reading

CONDITIONS = EXCHANGE_KINDS  # "original", "shuffle", "random baseline"
SCORE_KIND = {"QK": "induction", "OV": "shifting"}
DEFAULT_SETTINGS = CopyingSettings()


def _arrays(probs: dict, errs: dict) -> dict[str, np.ndarray]:
    """Per-sample arrays by condition, for the NPZ file."""
    arrays = {f"probs_{c.replace(' ', '_')}": v for c, v in probs.items()}
    return arrays | {f"errs_{c.replace(' ', '_')}": v for c, v in errs.items()}


@dataclass
class ShuffleResult:
    """One shuffle experiment on K heads: probs and errs `{condition: (n_exp, batch, n_positions)}` and the pairs."""

    component: str
    heads: list[list[int]]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    pairs: dict[str, list]

    @property
    def name(self) -> str:
        """File stem: `shuffle_{component}_K{K}_T{seg_len}`."""
        return f"shuffle_{self.component}_K{len(self.heads)}_T{self.settings.seg_len}"

    @property
    def summary(self) -> dict:
        """Per condition: mean and 95% interval of error, probability and paired error change."""
        return condition_summary(self.probs, self.errs, per_repetition(self.errs["original"]))

    @property
    def by_position(self) -> dict:
        """Per condition and metric: mean and 95% interval across repetitions at each scored position."""
        return by_position(self.probs, self.errs)

    def record(self) -> dict:
        """Settings, heads, summaries and the exchanged pairs, as saved to JSON."""
        return {
            "experiment": "shuffle",
            "component": self.component,
            "K": len(self.heads),
            "heads": self.heads,
            **self.settings.record(),
            "summary": self.summary,
            "by_position": self.by_position,
            "pairs": self.pairs,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by condition."""
        return _arrays(self.probs, self.errs)


@dataclass
class ShuffleSweep:
    """Shuffle experiments on the top K heads for each K: `{condition: (n_K, n_exp, batch, n_positions)}`."""

    component: str
    heads: list[list[int]]
    Ks: list[int]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    pairs: dict[str, list]

    @property
    def kind(self) -> str:
        """The kind of head the edited component belongs to: "induction" (QK) or "shifting" (OV)."""
        return SCORE_KIND[self.component]

    @property
    def name(self) -> str:
        """File stem: `shuffle_sweep_{component}_T{seg_len}`."""
        return f"shuffle_sweep_{self.component}_T{self.settings.seg_len}"

    @property
    def summary(self) -> dict:
        """Per condition: mean and 95% interval `(n_K,)` of error, probability and paired error change."""
        return condition_summary(self.probs, self.errs, per_repetition(self.errs["original"]))

    def record(self) -> dict:
        """Settings, heads, summaries and the exchanged pairs, as saved to JSON."""
        return {
            "experiment": "shuffle_sweep",
            "component": self.component,
            "Ks": self.Ks,
            "heads": self.heads,
            **self.settings.record(),
            "summary": self.summary,
            "pairs": self.pairs,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by condition."""
        return _arrays(self.probs, self.errs)


def _check_exchangeable(model: AnyGPT2, heads: list[list[int]], pool: list | None) -> None:
    """Raise before any forward pass if `heads` cannot be shuffled or given random heads from `pool`."""
    if len(heads) < 2:
        raise IHLibError(f"Shuffling needs at least 2 heads, got {len(heads)}.")
    random_candidates(model, heads, pool)


def _exchange_runs(
    model: AnyGPT2,
    settings: CopyingSettings,
    heads: list[list[int]],
    Ks: list[int],
    component: str,
    pool: list | None,
    chunk_size: int,
    progress: bool,
) -> tuple[dict, dict, dict]:
    """Score every condition for each K on every batch: probs, errs `{condition: (n_K, n_exp, b, p)}` and the pairs."""
    batches, positions, n_exp = settings.batches(), settings.positions(), settings.n_exp
    scored = {condition: [[None] * n_exp for _ in Ks] for condition in CONDITIONS}
    pairs = {kind: [[None] * n_exp for _ in Ks] for kind in CONDITIONS[1:]}
    bar = tqdm(total=n_exp * (1 + 2 * len(Ks)), desc=f"shuffle {component}", disable=not progress)
    for r, ids in enumerate(batches):
        original = pred_probs(model, ids, positions, chunk_size)
        bar.update()
        for k, K in enumerate(Ks):
            scored["original"][k][r] = original
            for c, kind in enumerate(CONDITIONS[1:]):
                rng = np.random.default_rng([settings.seed, r, K, c])
                with exchange_edit(model, heads[:K], component, kind, rng, pool) as used:
                    scored[kind][k][r] = pred_probs(model, ids, positions, chunk_size)
                pairs[kind][k][r] = used
                bar.update()
    bar.close()
    probs = {c: np.array([[p for p, _ in row] for row in rows]) for c, rows in scored.items()}
    errs = {c: np.array([[e for _, e in row] for row in rows]) for c, rows in scored.items()}
    return probs, errs, pairs


@torch.no_grad()
def shuffle(
    model: AnyGPT2,
    heads: list,
    *,
    component: str = "QK",
    settings: CopyingSettings = DEFAULT_SETTINGS,
    pool: list | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> ShuffleResult:
    """Shuffle the `component` ("QK" or "OV") of `heads` among themselves or replace it by random heads'; score copying.

    Each repetition draws a fresh derangement and fresh random heads (from `pool`, default all other heads).
    """
    check_component(component)
    heads = model_heads(model, heads)
    settings = settings.resolved(model)
    _check_exchangeable(model, heads, pool)
    probs, errs, pairs = _exchange_runs(model, settings, heads, [len(heads)], component, pool, chunk_size, progress)
    probs, errs = {c: v[0] for c, v in probs.items()}, {c: v[0] for c, v in errs.items()}
    return ShuffleResult(component, heads, settings, probs, errs, {kind: rows[0] for kind, rows in pairs.items()})


@torch.no_grad()
def shuffle_sweep(
    model: AnyGPT2,
    heads: list,
    Ks: list[int] | range,
    *,
    component: str = "QK",
    settings: CopyingSettings = DEFAULT_SETTINGS,
    pool: list | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> ShuffleSweep:
    """Run `shuffle` on `heads[:K]` for every K in `Ks` (same batches, the unedited model scored once per batch)."""
    check_component(component)
    heads = model_heads(model, heads)
    Ks = [check_k(K, len(heads), "K (a prefix length of heads)") for K in Ks]
    if not Ks:
        raise IHLibError("Ks is empty: pass at least one number of heads to edit, e.g. range(2, 9).")
    settings = settings.resolved(model)
    for K in Ks:
        _check_exchangeable(model, heads[:K], pool)
    probs, errs, pairs = _exchange_runs(model, settings, heads, Ks, component, pool, chunk_size, progress)
    return ShuffleSweep(component, heads, Ks, settings, probs, errs, pairs)


def intact_heads(pairs: list, real: list) -> int:
    """Return how many heads of `real` still carry the component of a head in `real` after the exchange `pairs`.

    `pairs` is `[[target, source], ...]` as yielded by `exchange_edit`; heads not targeted keep their own.
    """
    members = {(int(layer), int(head)) for layer, head in real}
    source_of = {(int(t[0]), int(t[1])): (int(s[0]), int(s[1])) for t, s in pairs}
    return sum(source_of.get(head, head) in members for head in members)


def index_at_most(Ks: list[int], n: int) -> int:
    """Return the index of `n` in `Ks`, else of the largest K below `n`; raise when every K exceeds `n`."""
    below = [i for i, K in enumerate(Ks) if K <= n]
    if not below:
        raise IHLibError(f"The sweep's Ks {Ks} all exceed the {n} heads that count: include a K <= {n}.")
    return Ks.index(n) if n in Ks else below[-1]


@dataclass(frozen=True)
class ShuffleJudgement:
    """Claim 3's rule for one component: the label, why, and the numbers at the K it was read at (None if untested)."""

    label: str
    why: str
    n_counting: int
    K: int | None = None
    index: int | None = None
    shuffle_change: dict | None = None
    random_change: dict | None = None
    gap: dict | None = None


ONE_REPETITION = "one repetition gives no confidence interval, so nothing can be read: re-run with n_exp >= 2."


def judge_shuffle(sweep: ShuffleSweep, n_counting: int, *, tolerance: float = 0.1) -> ShuffleJudgement:
    """Claim 3 for one component, read at K = the number of heads that count as heads of its kind.

    Supported: shuffling is harmless (error change below `tolerance`, 95% interval) while random heads break
    copying (change above it); partly: shuffling hurts, but less than random heads by more than `tolerance`;
    not supported: otherwise; not tested: fewer than two counting heads, one repetition, or random heads do
    not break copying either.
    """
    if n_counting < 2:
        return ShuffleJudgement("not tested", "too few heads count", n_counting)
    k = index_at_most(sweep.Ks, n_counting)
    summary = sweep.summary
    d_shuffle, d_random = at(summary["shuffle"]["err_change"], k), at(summary["random baseline"]["err_change"], k)
    gap = {
        key: float(v)
        for key, v in mean_ci(per_repetition(sweep.errs["random baseline"][k] - sweep.errs["shuffle"][k])).items()
    }
    numbers = dict(
        n_counting=n_counting, K=sweep.Ks[k], index=k, shuffle_change=d_shuffle, random_change=d_random, gap=gap
    )
    if sweep.settings.n_exp < 2:
        return ShuffleJudgement("not tested", ONE_REPETITION, **numbers)
    if reading(d_random, tolerance) != "breaks":
        why = "random heads do not clearly break copying at this K either, so the test cannot tell the two apart."
        return ShuffleJudgement("not tested", why, **numbers)
    if reading(d_shuffle, tolerance) == "intact":
        return ShuffleJudgement("supported", "shuffling is harmless while random heads break copying.", **numbers)
    if gap["low"] > tolerance:
        return ShuffleJudgement("partly supported", "", **numbers)
    return ShuffleJudgement("not supported", "shuffling hurts about as much as random heads.", **numbers)
