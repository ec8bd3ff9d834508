"""The words of each claim's verdict: sentences rendered from the rules' judgements (`judge_*` beside each claim)."""

from __future__ import annotations

import numpy as np

from ihlib.copying import per_repetition
from ihlib.diagonal import DiagonalJudgement
from ihlib.heads import counting_heads, head_label, head_role
from ihlib.projection import SUBSPACES, ProjectionJudgement, ProjectionResult
from ihlib.scoring import HeadScores
from ihlib.shuffling import CONDITIONS, ONE_REPETITION, ShuffleJudgement, ShuffleSweep, intact_heads
from ihlib.stats import CHANCE_ABOVE_Q95, at, mean_ci, reading
from ihlib.subspaces import MatchingJudgement
from ihlib.verdicts import Verdict


def interval(stats: dict, signed: bool = False) -> str:
    """Format `{mean, low, high}` as "0.02 [0.01, 0.03]": a rate, its interval clipped to [0, 1]; or, when `signed`,
    a change as "+0.02 [-0.01, +0.05]". Values that round to zero print without a minus sign."""
    low, high = (stats["low"], stats["high"]) if signed else (max(stats["low"], 0.0), min(stats["high"], 1.0))

    def fmt(value: float) -> str:
        return f"{round(value, 2) + 0.0:{'+' if signed else ''}.2f}"

    if np.isnan(stats["low"]):
        return fmt(stats["mean"]) + " (one repetition: no interval)"
    return f"{fmt(stats['mean'])} [{fmt(low)}, {fmt(high)}]"


def _a(word: str) -> str:
    """Return `word` with its indefinite article: "an induction head", "a shifting head"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def diagonal_verdict(judgement: DiagonalJudgement) -> Verdict:
    """Claim 1's verdict in words: the counts above the baseline's 95th percentile, medians, the seed's z > 2 rule."""
    claim = "Claim 1 (large diagonal of W_qk W_ov)"
    j = judgement
    if j.n == 0:
        return Verdict(
            claim,
            "not tested",
            "No listed shifting head sits in an earlier layer than a listed IH, so no listed pair can compose: "
            "list more heads (K0, K1).",
        )
    evidence = (
        f"Of the {j.n} listed pairs whose shifting head sits in an earlier layer than the IH, {j.above} have a "
        f"diagonal z-score above the 95th percentile of random head pairs ({j.baseline_high:.2f})"
    )
    if j.above > 0:
        evidence += (
            f"; pairs like random ones would give about {CHANCE_ABOVE_Q95 * j.n:.1f} (probability of {j.above} or "
            f"more by chance: {j.chance:.2g})"
        )
    evidence += f". Their median z is {j.median:.2f}, against {j.baseline_median:.2f} for random pairs."
    if j.median < j.baseline_low:
        evidence += (
            f" The median is even below the random pairs' 5th percentile ({j.baseline_low:.2f}): on average these "
            "diagonals are smaller than those of random head pairs, the opposite of the claim."
        )
    evidence += f" By the seed's rule without a baseline (z > 2), {j.seed_rule} of the {j.n} pairs would count."
    return Verdict(claim, j.label, evidence)


def matching_verdict(judgement: MatchingJudgement) -> Verdict:
    """Claim 2's verdict in words: per comparison, the settings whose listed median clears each baseline."""
    lines = [
        f"{mode}: the listed median is above the random-heads 95th percentile in {heads} of {n} (score, rank) "
        f"settings, above the Gaussian one in {gauss} of {n}."
        for mode, (heads, gauss, n) in judgement.counts.items()
    ]
    required = judgement.required
    basis = "Judged on " + " and ".join(required) if required else "No IH x SH or IH x IH comparison given"
    return Verdict("Claim 2 (common subspace)", judgement.label, f"{basis}; per comparison:", lines)


def shuffle_verdict(
    sweep: ShuffleSweep,
    judgement: ShuffleJudgement,
    scores: HeadScores,
    *,
    fraction: float,
    margin: float,
    tolerance: float,
) -> Verdict:
    """Claim 3's verdict for one component in words, with redundancy, heads beyond the counting ones, and spread."""
    component, kind, j = sweep.component, sweep.kind, judgement
    claim = f"Claim 3 ({component} of {kind} heads)"
    if j.K is None:
        return Verdict(
            claim,
            "not tested",
            f"Only {j.n_counting} head counts as {_a(kind)} head on this model, so there is nothing to shuffle it "
            f"with: the invariance claim has no {kind} heads to hold for. Lower `fraction` or check chapter 0's "
            "scores.",
        )
    summary, Ks, n, K = sweep.summary, sweep.Ks, j.n_counting, j.K
    errors = {c: interval(at(summary[c]["err"], j.index)) for c in CONDITIONS}
    scope = f"the {K} heads that count as {kind} heads" if K == n else f"the top {K} of the {n} {kind} heads"
    text = (
        f"Shuffling the {component} among {scope} changes the top-1 copying error by "
        f"{interval(j.shuffle_change, signed=True)} (unedited {errors['original']}, shuffled {errors['shuffle']}); "
        f"giving them the {component} of random heads instead changes it by {interval(j.random_change, signed=True)} "
        f"(error {errors['random baseline']}). A change counts as breaking copying when its 95% interval lies "
        f"above +{tolerance:.2f}, as harmless when it lies below."
    )
    why = j.why or (
        f"shuffling hurts, but random heads hurt more by {interval(j.gap, signed=True)}: the heads are "
        "interchangeable only in part."
    )
    readings = {c: [reading(at(summary[c]["err_change"], i), tolerance) for i in range(len(Ks))] for c in CONDITIONS}
    real = counting_heads(scores, kind, fraction=fraction, margin=margin)
    layers = sorted({layer for layer, _ in real})
    details = [
        f"Reading at K = {K}: {why} The {n} {kind} heads sit in layer(s) {', '.join(map(str, layers))}"
        + (
            ": all in one layer, where heads that attend alike are interchangeable whatever their subspaces."
            if len(layers) == 1
            else "."
        ),
        _redundancy_line(Ks, readings["random baseline"], n, component),
    ]
    beyond = _beyond_line(sweep, scores, real, readings["shuffle"], fraction=fraction, margin=margin)
    if beyond:
        details.append(beyond)
    details.append(_variance_line(sweep))
    return Verdict(claim, j.label, text, details)


def _first_k(Ks: list[int], readings: list[str], wanted: str, above: int | None = None, upto: int | None = None):
    """Return the first K with `readings[k] == wanted` among the Ks in `(above, upto]`, or None."""
    return next(
        (
            K
            for K, r in zip(Ks, readings, strict=True)
            if (above is None or K > above) and (upto is None or K <= upto) and r == wanted
        ),
        None,
    )


def _redundancy_line(Ks: list[int], random_readings: list[str], n: int, component: str) -> str:
    """Say from which K, up to the counting heads, random replacement breaks copying."""
    first = _first_k(Ks, random_readings, "breaks", upto=n)
    if first is None:
        return f"Replacing the {component} of up to {n} top heads by random heads' never clearly breaks copying."
    if first == min(Ks):
        return f"Replacing the {component} of the top {first} heads by random heads' already breaks copying."
    return (
        f"Replacing the {component} of the top K heads by random heads' breaks copying only from K = {first} on: "
        "with fewer heads replaced, the heads left intact still copy (redundancy)."
    )


def repetition_intact(sweep: ShuffleSweep, real: list, condition: str, k: int) -> float:
    """Mean over repetitions of `intact_heads(real)` after the exchange of `condition` at the sweep's `k`-th K."""
    pairs = sweep.pairs[condition][k]
    return float(np.mean([intact_heads(p, real) for p in pairs]))


def _beyond_line(
    sweep: ShuffleSweep, scores: HeadScores, real: list, shuffle_readings: list[str], *, fraction: float, margin: float
) -> str:
    """Say which heads follow the counting ones in the ranking and what shuffling them does ("" if K stays within)."""
    component, kind, Ks, heads, n = sweep.component, sweep.kind, sweep.Ks, sweep.heads, len(real)
    if max(Ks) <= n:
        return ""
    roles = (
        f"{head_label(*h)} ({head_role(scores, *h, fraction=fraction, margin=margin)})" for h in heads[n : max(Ks)]
    )
    line = f"Beyond the {n} {kind} heads the ranking continues with {', '.join(roles)}. "
    first = _first_k(Ks, shuffle_readings, "breaks", above=n)
    if first is None:
        return line + f"Shuffling them in never clearly breaks copying up to K = {max(Ks)}."
    intact = repetition_intact(sweep, real, "shuffle", Ks.index(first))
    line += (
        f"Shuffling first breaks copying at K = {first}: there, on average {intact:.1f} of the {n} {kind} "
        f"heads still carry {_a(kind)} head's {component}"
    )
    other = "shifting" if kind == "induction" else "induction"
    n_other = sum(h in counting_heads(scores, other, fraction=fraction, margin=margin) for h in heads[:first])
    if n_other:
        line += f"; {n_other} of the shuffled heads count as {other} heads and lose their own {component}"
    return line + "."


def _variance_line(sweep: ShuffleSweep) -> str:
    """Say how far single repetitions spread where they spread most, against the 95% interval of their mean."""
    spread = {(K, c): per_repetition(sweep.errs[c][k]) for c in CONDITIONS[1:] for k, K in enumerate(sweep.Ks)}
    (K, condition), values = max(spread.items(), key=lambda item: np.ptp(item[1]))
    stats = mean_ci(values)
    half = float(stats["high"] - stats["mean"])
    return (
        f"Variability: single repetitions spread most for '{condition}' at K = {K}, from {values.min():.2f} to "
        f"{values.max():.2f}; the mean of the {sweep.settings.n_exp} repetitions is {float(stats['mean']):.2f} ± "
        f"{half:.2f} (95%). One repetition, as in the seed, can land anywhere in that range."
    )


def _projection_sentence(result: ProjectionResult, rank: int | None) -> str:
    """One sentence on one projection run: where it decides, with errors of both subspaces there."""
    summary = result.summary
    where = "keys (W_K)" if result.component == "QK" else "outputs (W_O)"
    heads = f"the {len(result.heads)} heads' {where}"
    if result.project_out:
        action, success, control = f"Projecting it out of {heads}", "breaks copying", "leaves it intact"
    else:
        action, success, control = f"Keeping only it in {heads}", "keeps copying intact", "breaks it"
    shown = result.ranks.index(rank or result.ranks[-1])
    errors = {s: interval(at(summary[s]["err"], shown)) for s in SUBSPACES}
    if rank is None:
        return (
            f"{action} never {success} at a rank where a random subspace of the same rank {control}, up to rank "
            f"{result.ranks[-1]} (there: error {errors['common subspace']}, random subspace "
            f"{errors['random subspace']})."
        )
    return (
        f"{action} first {success} at rank {rank} (error {errors['common subspace']}, against "
        f"{interval(at(summary['common subspace']['err'], 0))} unedited), where a random subspace of the same rank "
        f"{control} (error {errors['random subspace']}); the top {rank} directions hold "
        f"{result.stack_energy_at_rank[shown]:.0%} of the stacked W_QK's energy."
    )


def _target_heads(component: str) -> str:
    """Name where a component's projection acts: IH keys or shifting-head outputs."""
    return "keys of induction heads" if component == "QK" else "outputs of shifting heads"


def projection_verdict(
    runs: dict[bool, ProjectionResult], judgement: ProjectionJudgement, *, tolerance: float
) -> Verdict:
    """Claim 4's verdict for one component in words; `runs` maps project_out (True, False) to the result."""
    claim = f"Claim 4 ({judgement.component}: {_target_heads(judgement.component)})"
    out = runs[True]
    if out.untested or runs[False].untested:
        return Verdict(claim, "not tested", f"Nothing to edit: {judgement.why}")
    text = (
        f"The common subspace: top right singular directions of the stacked W_QK of {len(out.IH_proj)} "
        "induction heads. " + " ".join(_projection_sentence(runs[o], judgement.decisive[o]) for o in (True, False))
    )
    details = [f"Not read: {ONE_REPETITION}"] if out.settings.n_exp < 2 else []
    details += [
        f"A change in top-1 error counts as breaking copying when its 95% interval lies above +{tolerance:.2f}, "
        "as harmless when it lies below; 'decisive' ranks are where the common and the random subspace of the "
        f"same rank give opposite readings. {out.settings.n_exp} repetitions of {out.settings.batch_size} sequences."
    ]
    return Verdict(claim, judgement.label, text, details)
