"""Claim 3: shuffling the QK (OV) components among induction (shifting) heads barely hurts copying; random heads do.

Each repetition of the copying test (`copying.CopyingSettings`) scores the unedited model, a fresh
derangement of the heads' components among themselves ("shuffle") and fresh random heads' components
("random baseline"), all on the same batch. Experiments take the heads they are given and score no heads.

`shuffle_controls` adds controls that can fail: a shuffle across layers (each head receives a head's component
from another layer), the other heads of the same layers shuffled among themselves, and random heads drawn from
the edited heads' own layers. Heads of one layer that attend alike are interchangeable whatever their weights,
so a shuffle within one layer says something only when shuffling that layer's other heads does hurt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.claims.shuffle_conditions import (
    ALIKE,
    CONTROLS,
    control_pairs,
    control_pools,
    derangements,
    distinct_exchanges,
    same_layer_distances,
)
from ihlib.core.copying import CopyingSettings, by_position, condition_summary, per_repetition, pred_probs
from ihlib.core.edits import (
    EXCHANGE_KINDS,
    check_component,
    exchange_edit,
    model_heads,
    pairs_edit,
    random_candidates,
)
from ihlib.core.stats import Interval, mean_ci, read_error_change
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_k
from ihlib.model.loading import AnyGPT2

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


ONE_REPETITION = "one repetition gives no confidence interval, so nothing can be read: re-run with n_exp >= 2."


@dataclass
class ShuffleControls:
    """The shuffle of `heads` beside its controls (`CONTROLS`): probs and errs `{condition: (n_exp, batch, n_pos)}`.

    `others`: heads of the edited heads' layers outside `exclude` (the heads of the kind); `absent` says, per
    control that could not run on this model, why; `pairs[condition][r]` are the exchanges of repetition r;
    `distances`: per pair of edited heads of one layer, the mean total variation of their attention on the copying
    batches (`shuffle_conditions`).
    """

    component: str
    heads: list[list[int]]
    others: list[list[int]]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    pairs: dict[str, list]
    absent: dict[str, str]
    distances: dict[str, float] = field(default_factory=dict)

    @property
    def distinct(self) -> dict[str, int]:
        """Per exchange condition, how many distinct exchanges its repetitions used."""
        return {c: distinct_exchanges(used) for c, used in self.pairs.items()}

    @property
    def kind(self) -> str:
        """The kind of head the edited component belongs to: "induction" (QK) or "shifting" (OV)."""
        return SCORE_KIND[self.component]

    @property
    def layers(self) -> list[int]:
        """The layers of the edited heads."""
        return sorted({h[0] for h in self.heads})

    @property
    def name(self) -> str:
        """File stem: `shuffle_controls_{component}_T{seg_len}`."""
        return f"shuffle_controls_{self.component}_T{self.settings.seg_len}"

    @property
    def summary(self) -> dict:
        """Per condition: mean and 95% interval of error, probability and paired error change."""
        return condition_summary(self.probs, self.errs, per_repetition(self.errs["original"]))

    def record(self) -> dict:
        """Settings, heads, summaries, absent controls and exchanges, as saved to JSON."""
        return {
            "experiment": "shuffle_controls",
            "component": self.component,
            "heads": self.heads,
            "others": self.others,
            **self.settings.record(),
            "summary": self.summary,
            "absent": self.absent,
            "attention_distances": self.distances,
            "distinct_exchanges": self.distinct,
            "pairs": self.pairs,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by condition."""
        return _arrays(self.probs, self.errs)


@torch.no_grad()
def shuffle_controls(
    model: AnyGPT2,
    heads: list,
    *,
    component: str = "QK",
    exclude: list | tuple = (),
    settings: CopyingSettings = DEFAULT_SETTINGS,
    chunk_size: int = 64,
    progress: bool = True,
) -> ShuffleControls:
    """Shuffle the `component` of `heads` and run every control of `CONTROLS` that exists, on the same batches.

    `exclude`: heads that are not "of another kind": pass every head that counts as an induction or a shifting head
    (both listed kinds), or the control pools can hold circuit heads.
    Random heads of these layers are drawn with replacement when the layers hold fewer of them than `heads`.
    """
    check_component(component)
    heads = model_heads(model, heads)
    exclude = model_heads(model, list(exclude), "exclude") if len(exclude) else []
    settings = settings.resolved(model)
    _check_exchangeable(model, heads, None)
    others, absent = control_pools(model, heads, exclude)
    conditions = [c for c in CONTROLS if c not in absent]
    batches, positions = settings.batches(), settings.positions()
    scored = {c: [] for c in conditions}
    pairs = {c: [] for c in conditions[1:]}
    bar = tqdm(total=settings.n_exp * len(conditions), desc=f"controls {component}", disable=not progress)
    distances = [same_layer_distances(model, heads, ids, positions) for ids in batches]
    for r, ids in enumerate(batches):
        for c, condition in enumerate(conditions):
            exchanges = control_pairs(model, condition, heads, others, np.random.default_rng([settings.seed, r, 7, c]))
            with pairs_edit(model, exchanges, component):
                scored[condition].append(pred_probs(model, ids, positions, chunk_size))
            if condition != "original":
                pairs[condition].append(exchanges)
            bar.update()
    bar.close()
    probs = {c: np.array([p for p, _ in rows]) for c, rows in scored.items()}
    errs = {c: np.array([e for _, e in rows]) for c, rows in scored.items()}
    mean_distances = {pair: float(np.mean([d[pair] for d in distances])) for pair in distances[0]}
    return ShuffleControls(component, heads, others, settings, probs, errs, pairs, absent, mean_distances)


@dataclass(frozen=True)
class ControlledShuffleJudgement:
    """Claim 3's rule with controls for one component: the label, why, which conditions were compared, and numbers."""

    label: str
    why: str
    test: str | None = None
    reference: str | None = None
    changes: dict[str, Interval] | None = None
    gap: Interval | None = None


READINGS = {
    "intact": "harmless: its interval lies below +{t:.2f}",
    "breaks": "breaks copying: its interval lies above +{t:.2f}",
    "unclear": "unclear: its interval straddles +{t:.2f}, neither harmless nor breaking",
}


def reading_words(change: Interval, tolerance: float) -> str:
    """An error change and its reading in words: "+0.10 [+0.06, +0.14] (unclear: its interval straddles +0.10 ...)"."""
    reading = READINGS[read_error_change(change, tolerance)].format(t=tolerance)
    mean, low, high = (round(x, 2) + 0.0 for x in (change.mean, change.low, change.high))
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] ({reading})"


def alike_reason(result: ShuffleControls) -> str | None:
    """Why a shuffle within one layer cannot fail (the edited heads attend alike), or None."""
    if len(result.layers) != 1 or not result.distances:
        return None
    largest = max(result.distances.values())
    if largest > ALIKE:
        return None
    return (
        f"the {len(result.heads)} edited heads share layer {result.layers[0]} and attend alike on the copying "
        f"sequences (largest mean total variation between two of their attention patterns {largest:.3f}, at most "
        f"{ALIKE}): exchanging their {result.component} leaves the layer's output nearly unchanged whatever their "
        "weights, so the shuffle cannot fail."
    )


def judge_shuffle_controls(result: ShuffleControls, *, tolerance: float = 0.1) -> ControlledShuffleJudgement:
    """Claim 3 for one component, only from a test that could fail; one rule for QK and OV.

    Test: the cross-layer shuffle where it exists (judged on its own result: heads of different layers read
    different residuals), else the shuffle. Reference: random heads of the edited heads' layers where they exist,
    else random heads. Not tested: one repetition. Not informative: the test is a shuffle within one layer whose
    heads attend alike (`shuffle_conditions.ALIKE`), or the reference does not clearly break copying ("unclear" is
    not "breaks"). Supported: the test is harmless (95% interval of the error change below `tolerance`) and the
    reference breaks copying; partly: the test is not harmless but the reference hurts more by more than
    `tolerance` (paired gap's interval); not supported otherwise. Every reason states its numbers.
    """
    summary = result.summary
    changes = {c: Interval.of(summary[c]["err_change"]) for c in summary}
    if result.settings.n_exp < 2:
        return ControlledShuffleJudgement("not tested", ONE_REPETITION, changes=changes)
    test = "cross-layer shuffle" if "cross-layer shuffle" in summary else "shuffle"
    reference = "random heads of these layers" if "random heads of these layers" in summary else "random heads"
    numbers = dict(test=test, reference=reference, changes=changes)
    alike = alike_reason(result) if test == "shuffle" else None
    if alike:
        return ControlledShuffleJudgement("not informative", alike, **numbers)
    test_words = f"the {test} changes the top-1 error by {reading_words(changes[test], tolerance)}"
    reference_words = f"'{reference}' change it by {reading_words(changes[reference], tolerance)}"
    if read_error_change(changes[reference], tolerance) != "breaks":
        why = f"{reference_words}, so the test cannot tell a harmless shuffle from a harmful one; {test_words}."
        return ControlledShuffleJudgement("not informative", why, **numbers)
    gap = Interval.of(mean_ci(per_repetition(result.errs[reference] - result.errs[test])))
    gap_words = f"paired gap {reading_words(gap, tolerance).split(' (')[0]}"
    if read_error_change(changes[test], tolerance) == "intact":
        return ControlledShuffleJudgement("supported", f"{test_words}, while {reference_words}.", **numbers, gap=gap)
    if gap.low > tolerance:
        why = f"{test_words}, but {reference_words}: they hurt more, by more than +{tolerance:.2f} ({gap_words})."
        return ControlledShuffleJudgement("partly supported", why, **numbers, gap=gap)
    why = f"{test_words}, and {reference_words}: not clearly more ({gap_words})."
    return ControlledShuffleJudgement("not supported", why, **numbers, gap=gap)


def repetition_words(result: ShuffleControls, condition: str) -> str:
    """Say how many distinct exchanges the repetitions of `condition` used, and when they repeat one experiment."""
    used, n = result.distinct.get(condition, 0), result.settings.n_exp
    possible = derangements(len(result.heads)) if condition == "shuffle" else None
    of = f" of the {possible} that exist" if possible is not None else ""
    line = f"The {n} repetitions of the {condition} used {used} distinct exchange(s){of}"
    if used == 1 and n > 1:
        return line + ": they repeat one experiment on fresh sequences, so the interval covers the sequences only."
    return line + "."


def repetition_intact(sweep: ShuffleSweep, real: list, condition: str, k: int) -> float:
    """Mean over repetitions of `intact_heads(real)` after the exchange of `condition` at the sweep's `k`-th K."""
    pairs = sweep.pairs[condition][k]
    return float(np.mean([intact_heads(p, real) for p in pairs]))
