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

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.core.copying import CopyingSettings, by_position, condition_summary, per_repetition, pred_probs
from ihlib.core.edits import (
    EXCHANGE_KINDS,
    check_component,
    cross_layer_pairs,
    cross_layer_possible,
    exchange_edit,
    exchange_pairs,
    model_heads,
    pairs_edit,
    random_candidates,
)
from ihlib.core.stats import Interval, mean_ci, read_error_change
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import all_heads, check_k
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


CONTROLS = (
    "original",
    "shuffle",
    "cross-layer shuffle",
    "other heads of these layers, shuffled",
    "random heads of these layers",
    "random heads",
)


@dataclass
class ShuffleControls:
    """The shuffle of `heads` beside its controls (`CONTROLS`): probs and errs `{condition: (n_exp, batch, n_pos)}`.

    `others`: heads of the edited heads' layers outside `exclude` (the heads of the kind); `absent` says, per
    control that could not run on this model, why; `pairs[condition][r]` are the exchanges of repetition r.
    """

    component: str
    heads: list[list[int]]
    others: list[list[int]]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    pairs: dict[str, list]
    absent: dict[str, str]

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
            "pairs": self.pairs,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by condition."""
        return _arrays(self.probs, self.errs)


def _control_pools(model: AnyGPT2, heads: list, exclude: list) -> tuple[list, dict[str, str]]:
    """The other heads of the edited heads' layers, and why each control that cannot run is absent."""
    layers = {h[0] for h in heads}
    shape = (model.config.n_layer, model.config.n_head)
    others = [h for h in all_heads(shape) if h[0] in layers and h not in heads and h not in exclude]
    where = f"layer(s) {', '.join(map(str, sorted(layers)))}"
    absent = {}
    if not cross_layer_possible(heads):
        absent["cross-layer shuffle"] = (
            f"the edited heads all sit in {where}"
            if len(layers) == 1
            else "one layer holds more than half of the edited heads, so no head can avoid its own layer"
        )
    if len(others) < 2:
        absent["other heads of these layers, shuffled"] = f"{where} hold(s) {len(others)} head(s) of another kind"
    if not others:
        absent["random heads of these layers"] = f"{where} hold(s) no head of another kind"
    return others, absent


def _control_pairs(model: AnyGPT2, condition: str, heads: list, others: list, rng: np.random.Generator) -> list:
    """The exchanges `[[target, source], ...]` of one control condition for one repetition."""
    if condition == "original":
        return []
    if condition == "shuffle":
        return exchange_pairs(model, heads, "shuffle", rng)
    if condition == "cross-layer shuffle":
        return cross_layer_pairs(heads, rng)
    if condition == "other heads of these layers, shuffled":
        return exchange_pairs(model, others, "shuffle", rng)
    if condition == "random heads of these layers":
        with warnings.catch_warnings():  # fewer other heads than edited ones: drawn with replacement, as documented
            warnings.simplefilter("ignore")
            return exchange_pairs(model, heads, "random baseline", rng, others)
    return exchange_pairs(model, heads, "random baseline", rng)


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

    `exclude`: heads that are not "of another kind" (pass every head that counts as a head of this kind).
    Random heads of these layers are drawn with replacement when the layers hold fewer of them than `heads`.
    """
    check_component(component)
    heads = model_heads(model, heads)
    exclude = model_heads(model, list(exclude), "exclude") if len(exclude) else []
    settings = settings.resolved(model)
    _check_exchangeable(model, heads, None)
    others, absent = _control_pools(model, heads, exclude)
    conditions = [c for c in CONTROLS if c not in absent]
    batches, positions = settings.batches(), settings.positions()
    scored = {c: [] for c in conditions}
    pairs = {c: [] for c in conditions[1:]}
    bar = tqdm(total=settings.n_exp * len(conditions), desc=f"controls {component}", disable=not progress)
    for r, ids in enumerate(batches):
        for c, condition in enumerate(conditions):
            exchanges = _control_pairs(model, condition, heads, others, np.random.default_rng([settings.seed, r, 7, c]))
            with pairs_edit(model, exchanges, component):
                scored[condition].append(pred_probs(model, ids, positions, chunk_size))
            if condition != "original":
                pairs[condition].append(exchanges)
            bar.update()
    bar.close()
    probs = {c: np.array([p for p, _ in rows]) for c, rows in scored.items()}
    errs = {c: np.array([e for _, e in rows]) for c, rows in scored.items()}
    return ShuffleControls(component, heads, others, settings, probs, errs, pairs, absent)


@dataclass(frozen=True)
class ControlledShuffleJudgement:
    """Claim 3's rule with controls for one component: the label, why, which conditions were compared, and numbers."""

    label: str
    why: str
    test: str | None = None
    reference: str | None = None
    changes: dict[str, Interval] | None = None
    gap: Interval | None = None


def judge_shuffle_controls(result: ShuffleControls, *, tolerance: float = 0.1) -> ControlledShuffleJudgement:
    """Claim 3 for one component, only from a test that could fail.

    Test: the cross-layer shuffle where it exists, else the shuffle; reference: random heads of the edited heads'
    layers where they exist, else random heads. Not tested: one repetition. Not informative: the heads share one
    layer and shuffling that layer's other heads is harmless too (or there are none to shuffle), or the reference
    does not break copying. Then as before: supported when the test is harmless (95% interval of the error change
    below `tolerance`) and the reference breaks copying; partly when the reference hurts more by more than
    `tolerance`; not supported otherwise.
    """
    summary = result.summary
    changes = {c: Interval.of(summary[c]["err_change"]) for c in summary}
    if result.settings.n_exp < 2:
        return ControlledShuffleJudgement("not tested", ONE_REPETITION, changes=changes)
    test = "cross-layer shuffle" if "cross-layer shuffle" in summary else "shuffle"
    reference = "random heads of these layers" if "random heads of these layers" in summary else "random heads"
    numbers = dict(test=test, reference=reference, changes=changes)
    other = "other heads of these layers, shuffled"
    if len(result.layers) == 1:
        if other not in summary:
            why = (
                f"the {len(result.heads)} edited heads share layer {result.layers[0]}, which has no two heads of "
                f"another kind to show that a shuffle there could hurt ({result.absent[other]})."
            )
            return ControlledShuffleJudgement("not informative", why, **numbers)
        if read_error_change(changes[other], tolerance) != "breaks":
            why = (
                f"the {len(result.heads)} edited heads share layer {result.layers[0]}, and shuffling the "
                f"{len(result.others)} heads of another kind there does not break copying either: within that layer "
                "heads are interchangeable whatever their kind."
            )
            return ControlledShuffleJudgement("not informative", why, **numbers)
    if read_error_change(changes[reference], tolerance) != "breaks":
        why = f"'{reference}' does not clearly break copying either, so the test cannot tell the two apart."
        return ControlledShuffleJudgement("not informative", why, **numbers)
    gap = Interval.of(mean_ci(per_repetition(result.errs[reference] - result.errs[test])))
    if read_error_change(changes[test], tolerance) == "intact":
        return ControlledShuffleJudgement(
            "supported", f"the {test} is harmless while {reference} break copying.", **numbers, gap=gap
        )
    if gap.low > tolerance:
        return ControlledShuffleJudgement(
            "partly supported", f"the {test} hurts, but {reference} hurt more.", **numbers, gap=gap
        )
    return ControlledShuffleJudgement(
        "not supported", f"the {test} hurts about as much as {reference}.", **numbers, gap=gap
    )


def repetition_intact(sweep: ShuffleSweep, real: list, condition: str, k: int) -> float:
    """Mean over repetitions of `intact_heads(real)` after the exchange of `condition` at the sweep's `k`-th K."""
    pairs = sweep.pairs[condition][k]
    return float(np.mean([intact_heads(p, real) for p in pairs]))
