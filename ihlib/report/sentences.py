"""The words of each claim's verdict: sentences rendered from the rules' judgements (`judge_*` beside each claim)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.claims.diagonal import DiagonalControls, DiagonalJudgement
from ihlib.claims.shuffle_conditions import ALIKE
from ihlib.claims.shuffling import (
    CONDITIONS,
    ControlledShuffleJudgement,
    ShuffleControls,
    ShuffleSweep,
    repetition_intact,
    repetition_words,
)
from ihlib.claims.subspaces import JUDGED, PRIMARY_CONTROL, ControlsJudgement, SubspaceControls
from ihlib.claims.verdicts import KeyNumber, Verdict
from ihlib.core.circuits import STATISTICS, CompositionScores
from ihlib.core.copying import per_repetition
from ihlib.core.stats import Effect, Interval, mean_ci, read_error_change
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import counting_heads, head_role
from ihlib.model.head_ids import head_label
from ihlib.report.formatting import format_interval


def _a(word: str) -> str:
    """Return `word` with its indefinite article: "an induction head", "a shifting head"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


@dataclass(frozen=True)
class Paragraph:
    """A generated Markdown paragraph ("what we see"), displayed as Markdown by Jupyter."""

    text: str

    def _repr_markdown_(self) -> str:
        """The paragraph as Markdown."""
        return self.text


def effect_text(effect: Effect) -> str:
    """One effect as "+0.55 [+0.43, +0.68] (d = 5.1, p = 0.0005)": difference, head-resampled interval, Cohen's d."""
    return (
        f"{effect.difference:+.3f} [{effect.low:+.3f}, {effect.high:+.3f}] "
        f"(d = {effect.standardized:.2g}, one-sided p = {effect.p_value:.2g})"
    )


def _effect_lines(effects: dict[str, Effect], absent: dict[str, str]) -> list[str]:
    """One line per control: means, effect, interval; then one plain line per control that does not exist."""
    lines = [
        f"Against {name} ({e.n_control} pairs, mean {e.control_mean:.3f}): listed mean {e.listed_mean:.3f}, "
        f"difference {effect_text(e)}."
        for name, e in effects.items()
    ]
    return lines + [
        f"No {name} control on this model: {why.removeprefix('does not exist: ')}." for name, why in absent.items()
    ]


DIAGONAL_CLAIM = "Claim 1 (large diagonal of W_qk W_ov)"
SUBSPACE_CLAIM = "Claim 2 (common subspace)"


def shuffle_claim(component: str, kind: str) -> str:
    """Claim 3's name for one component ("QK" or "OV") and the kind of heads whose weights are shuffled."""
    return f"Claim 3 ({component} of {kind} heads)"


LARGE_RULE = "heads resampled 2000 times (not pairs); 'clear' = interval above 0 and Cohen's d >= 0.8"


WEIGHT_SCOPE = "direct weight path (W_qk, W_ov; no layer norm, no biases)"
SECONDARY = ("k_composition", "token_wins")  # claim 1's other statistics, reported beside the judged z-score


def effect_key(effect: Effect, measures: str) -> KeyNumber:
    """A claim's key number from one effect: listed minus control pair means with the head-resampled interval."""
    comparison = f"listed pairs minus {effect.control} pairs"
    return KeyNumber(measures, comparison, Interval(effect.difference, effect.low, effect.high))


def _secondary_lines(result: DiagonalControls | None) -> list[str]:
    """Claim 1's secondary statistics (K-composition, token-basis rate): how many controls each clears, and its
    effect over random composable pairs; reported, not judged."""
    lines = []
    for stat in SECONDARY:
        effects = result.effects.get(stat, {}) if result is not None else {}
        if not effects:
            continue
        clear = [name for name, e in effects.items() if e.clear]
        against = "; ".join(f"vs {name}: {effect_text(e)}" for name, e in effects.items())
        lines.append(
            f"Secondary (reported, not judged), {STATISTICS[stat]}: clears {len(clear)} of {len(effects)} "
            f"controls ({', '.join(clear) or 'none'}); {against}."
        )
    return lines


def diagonal_verdict(
    judgement: DiagonalJudgement,
    *,
    secondary: DiagonalControls | None = None,
    model: str = "",
    scope: str = WEIGHT_SCOPE,
) -> Verdict:
    """Claim 1's verdict in words, within `scope`: the effect of the listed pairs' z-score over each control, absent
    controls, and, from `secondary` (the `DiagonalControls`), the K-composition and token-basis statistics beside it."""
    claim = DIAGONAL_CLAIM
    j = judgement
    if j.n_pairs == 0 or not j.effects:
        why = (
            "no listed shifting head sits in an earlier layer than a listed IH"
            if j.n_pairs == 0
            else ("there is no random composable pair of unlisted heads to compare with")
        )
        text = f"Nothing to compare: {why}."
        return Verdict(claim, "not tested", text, caveat="not tested on this model", model=model, scope=scope)
    clear = [name for name, e in j.effects.items() if e.clear]
    text = (
        f"The {j.n_pairs} listed pairs that can compose have a diagonal z-score (the seed's statistic, the one "
        f"judged) that clears {len(clear)} of the {len(j.effects)} controls that exist here "
        f"({', '.join(clear) or 'none'}); mean difference and 95% interval, {LARGE_RULE}:"
    )
    details = _effect_lines(j.effects, j.absent) + _secondary_lines(secondary)
    primary = j.effects.get("random composable") or next(iter(j.effects.values()))
    key = effect_key(primary, STATISTICS[j.statistic])
    caveat = _weight_caveat(j.absent)
    summary = (
        f"The {j.n_pairs} listed pairs that can compose clear {len(clear)} of the {len(j.effects)} controls on the "
        f"diagonal z-score ({', '.join(clear) or 'none'})."
    )
    return Verdict(claim, j.label, text, details, caveat, model, scope, key, summary)


def _weight_caveat(absent: dict[str, str]) -> str:
    """The one-line caveat of a weight claim: the controls that do not exist, and what the weights leave out."""
    missing = f"no {' or '.join(absent)} control exists on this model; " if absent else ""
    return missing + "weights only (no layer norm, no biases)."


def diagonal_what_we_see(result: DiagonalControls, judgement: DiagonalJudgement) -> Paragraph:
    """A paragraph from the numbers: each statistic's listed mean against each control's, and what is absent."""
    if not judgement.effects:
        return Paragraph("Nothing to see: no listed pair can compose, or no control pair exists on this model.")
    parts = []
    for stat, effects in result.effects.items():
        listed = next(iter(effects.values())).listed_mean
        against = ", ".join(
            f"{name} {e.control_mean:.3f}" + ("" if e.clear else " (not cleared)") for name, e in effects.items()
        )
        parts.append(f"{STATISTICS[stat]}: listed {listed:.3f} against {against}")
    absent = " ".join(
        f"No {name} control on this model: {why.removeprefix('does not exist: ')}."
        for name, why in judgement.absent.items()
    )
    chance = (
        f" Chance for the token-basis rate is 1/{result.token_count} = {1 / result.token_count:.4f}."
        if result.token_count
        else ""
    )
    return Paragraph(
        f"**What we see.** Listed pairs (mean) against each control (mean): {'; '.join(parts)}.{chance} {absent} "
        f"The verdict reads the residual-basis z-score: **{judgement.label}**."
    )


def _rank_lines(results: list[SubspaceControls]) -> list[str]:
    """Per judged comparison and rank, how many controls the rank's "mean" score clears, and which."""
    lines = []
    for result in results:
        if result.mode == "SH x SH":
            continue
        parts, cleared = [], []
        for r in result.ranks:
            effects = result.effects.get(f"mean@{r}", {})
            clear = [name for name, e in effects.items() if e.clear]
            cleared.append(bool(clear))
            parts.append(f"r = {r}: clears {len(clear)} of {len(effects)} ({', '.join(clear) or 'none'})")
        line = f"{result.mode} per rank (reported beside the rank average): " + "; ".join(parts) + "."
        if result.ranks and not cleared[0]:
            line += f" At the smallest rank compared, r = {result.ranks[0]}, the {result.mode} match clears no control."
        lines.append(line)
    return lines


def matching_verdict(
    judgement: ControlsJudgement,
    *,
    per_rank: list[SubspaceControls] = (),
    model: str = "",
    scope: str = WEIGHT_SCOPE,
) -> Verdict:
    """Claim 2's verdict in words, within `scope`: per comparison, the effect of the judged score over each control,
    and, from `per_rank` (the chapter's `SubspaceControls`), how each rank fares on its own."""
    lines = []
    for mode, effects in judgement.effects.items():
        judged = "" if mode != "SH x SH" else " (reported, not judged)"
        lines.append(f"{mode}{judged}: {judgement.labels[mode]}.")
        lines += [f"{mode}: {line}" for line in _effect_lines(effects, judgement.absent[mode])]
    ranked = _rank_lines(list(per_rank))
    lines += ranked
    weak = [line.rsplit(". At the smallest rank compared, ", 1)[1] for line in ranked if "clears no control" in line]
    rank_note = f" Rank by rank, not only on average: at {'; at '.join(weak)}" if weak else ""
    text = (
        f"Judged on one number per pair, the {JUDGED} (correlated settings count once), in IH x SH and IH x IH; "
        f"{LARGE_RULE}.{rank_note} Each comparison against each control:"
    )
    absent = {name: why for found in judgement.absent.values() for name, why in found.items()}
    mode = "IH x SH" if "IH x SH" in judgement.effects else next(iter(judgement.effects), None)
    effects = judgement.effects.get(mode, {}) if mode else {}
    primary = effects.get(PRIMARY_CONTROL[mode]) if mode else None
    key = effect_key(primary, f"subspace match ({JUDGED}), {mode}") if primary else None
    caveat = _weight_caveat(absent)
    judged = [f"{mode} {label}" for mode, label in judgement.labels.items() if mode != "SH x SH"]
    summary = f"Against their controls, the rank-averaged subspace match reads: {'; '.join(judged)}."
    return Verdict(SUBSPACE_CLAIM, judgement.label, text, lines, caveat, model, scope, key, summary)


def matching_what_we_see(results: list[SubspaceControls], judgement: ControlsJudgement) -> Paragraph:
    """A paragraph from the numbers: per comparison and rank, where the listed pairs stand against random heads."""
    parts = []
    for result in results:
        primary = PRIMARY_CONTROL[result.mode]
        ranks = [
            f"r = {r}: {e.listed_mean:.2f} vs {e.control_mean:.2f}" + (" (interval above 0)" if e.low > 0 else "")
            for r in result.ranks
            if (e := result.effects[f"mean@{r}"].get(primary)) is not None
        ]
        if ranks:
            parts.append(f"{result.mode}, listed vs {primary} ('mean' score): " + "; ".join(ranks))
    return Paragraph(
        "**What we see.** " + ". ".join(parts) + f". Verdict on the rank-averaged score: **{judgement.label}** "
        f"({', '.join(f'{m}: {label}' for m, label in judgement.labels.items())})."
    )


SHUFFLE_SCOPE = "top-1 copying on repeated random tokens, weights exchanged between heads"


def shuffle_verdict(
    controls: ShuffleControls,
    judgement: ControlledShuffleJudgement,
    sweep: ShuffleSweep,
    scores: HeadScores,
    *,
    fraction: float,
    margin: float,
    tolerance: float,
    model: str = "",
) -> Verdict:
    """Claim 3's verdict for one component: every control's error change and P(correct), the judged comparison,
    how alike the edited heads attend, distinct exchanges, and the sweep's redundancy, heads beyond the counting
    ones, and spread of single repetitions."""
    component, kind, j = controls.component, controls.kind, judgement
    claim = shuffle_claim(component, kind)
    layers = ", ".join(map(str, controls.layers))
    summary = controls.summary
    changes = "; ".join(
        f"{c}: {format_interval(change, signed=True)} (P(correct) {format_interval(Interval.of(summary[c]['prob']))})"
        for c, change in (j.changes or {}).items()
        if c != "original"
    )
    unedited = Interval.of(summary["original"]["prob"])
    text = (
        f"Editing the {component} of the {len(controls.heads)} {kind} heads (layer(s) {layers}) changes the top-1 "
        f"copying error by: {changes} (unedited P(correct) {format_interval(unedited)}). A change breaks copying "
        f"when its 95% interval lies above +{tolerance:.2f}, is harmless when it lies below, and is unclear "
        f"otherwise. Reading: {j.why}"
    )
    details = [f"No '{c}' control on this model: {why}." for c, why in controls.absent.items()]
    details.append(f"Judged: '{j.test}' against '{j.reference}'." if j.test else "Nothing judged.")
    details += [repetition_words(controls, c) for c in ("shuffle", "cross-layer shuffle") if c in controls.pairs]
    if controls.distances:
        alike = ", ".join(f"{pair} {d:.3f}" for pair, d in controls.distances.items())
        details.append(
            f"How alike the edited heads of one layer attend (mean total variation of their attention on the "
            f"copying sequences; at most {ALIKE} counts as alike): {alike}."
        )
    real = counting_heads(scores, kind, fraction=fraction, margin=margin)
    n_k = len(sweep.Ks)
    readings = {
        c: [read_error_change(Interval.of(sweep.summary[c]["err_change"], i), tolerance) for i in range(n_k)]
        for c in CONDITIONS
    }
    details.append(_redundancy_line(sweep.Ks, readings["random baseline"], len(real), component))
    beyond = _beyond_line(sweep, scores, real, readings["shuffle"], fraction=fraction, margin=margin)
    if beyond:
        details.append(beyond)
    details.append(_variance_line(sweep))
    where = "one layer" if len(controls.layers) == 1 else "heads in several layers"
    caveats = {
        "not informative": f"could not fail here ({where}): see the reading.",
        "not tested": "not tested on this model.",
    }
    caveat = caveats.get(j.label, f"random tokens repeated; {where}; judged on the {j.test}.")
    if j.test and controls.distinct.get(j.test) == 1 and controls.settings.n_exp > 1:
        caveat += f" The {controls.settings.n_exp} repetitions of the {j.test} all use one and the same exchange."
    key = None
    if j.test and j.changes:
        key = KeyNumber("change in top-1 copying error", f"{j.test} minus original", j.changes[j.test])
    summary = j.why[:1].upper() + j.why[1:]
    return Verdict(claim, j.label, text, details, caveat, model, SHUFFLE_SCOPE, key, summary)


def shuffle_what_we_see(results: list[ShuffleControls], judgements: dict[str, ControlledShuffleJudgement]) -> Paragraph:
    """A paragraph from the numbers: per component, every condition's error and P(correct), and the label."""
    parts = []
    for result in results:
        j = judgements[result.component]
        errors = ", ".join(
            f"{c} {format_interval(Interval.of(result.summary[c]['err']))} "
            f"(P(correct) {format_interval(Interval.of(result.summary[c]['prob']))})"
            for c in result.summary
        )
        layers = ", ".join(map(str, result.layers))
        parts.append(
            f"{result.component} ({result.kind} heads, layer(s) {layers}): top-1 error {errors}; **{j.label}**"
        )
    return Paragraph("**What we see.** " + ". ".join(parts) + ".")


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


def composition_sentence(result: CompositionScores, IH_list: list, Shifting_list: list) -> Paragraph:
    """One sentence from the numbers: listed IH x shifting-head pairs' mean composition scores against all pairs'."""
    listed = [(ih, sh) for ih in IH_list for sh in Shifting_list if sh[0] < ih[0]]
    means = []
    for kind, grid in result.scores.items():
        every = float(np.nanmean(grid))
        if listed:
            mine = float(np.mean([grid[ih[0], ih[1], sh[0], sh[1]] for ih, sh in listed]))
            means.append(f"{kind} {mine:.3f} against {every:.3f}")
        else:
            means.append(f"{kind} {every:.3f}")
    n_pairs = int(np.isfinite(next(iter(result.scores.values()))).sum())
    if not listed:
        return Paragraph(
            f"No listed induction head has a listed shifting head in an earlier layer; the mean composition scores of "
            f"all {n_pairs} composable pairs are {', '.join(means)} (a description, not a test)."
        )
    return Paragraph(
        f"Mean composition score of the {len(listed)} listed induction-head x shifting-head pairs that can compose, "
        f"against all {n_pairs} composable pairs of the model: {', '.join(means)} (a description, not a test)."
    )
