"""Claim 4's words: the verdict and "what we see" of the projection chapter, rendered from the numbers."""

from __future__ import annotations

from ihlib.claims.projection import (
    KILLED,
    SUBSPACES,
    ProjectionJudgement,
    ProjectionResult,
    decisive_rank,
)
from ihlib.claims.projection_controls import ESSENTIALLY_ALL, FOLDS
from ihlib.claims.shuffling import ONE_REPETITION
from ihlib.claims.verdicts import KeyNumber, Verdict
from ihlib.core.copying import per_repetition
from ihlib.core.stats import Interval, mean_ci, read_error_change
from ihlib.model.head_ids import head_labels
from ihlib.report.formatting import format_interval
from ihlib.report.sentences import Paragraph

SCOPE = {
    "QK": "direct edit of the IHs' W_K, top-1 copying on repeated random tokens",
    "OV": "direct edit of the shifting heads' W_O, top-1 copying on repeated random tokens",
}


def projection_claim(component: str) -> str:
    """Claim 4's name for one component ("QK" or "OV")."""
    return f"Claim 4 ({component}: {_target_heads(component)})"


def _target_heads(component: str) -> str:
    """Name where a component's projection acts: IH keys or shifting-head outputs."""
    return "keys of induction heads" if component == "QK" else "outputs of shifting heads"


def matched_gap(result: ProjectionResult, index: int) -> Interval:
    """Paired error gap at rank index `index`: common subspace minus energy-matched control, mean and 95% interval."""
    diff = result.errs["common subspace"][index] - result.errs["energy-matched"][index]
    return Interval.of(mean_ci(per_repetition(diff)))


def judged_index(result: ProjectionResult, rank: int | None, tolerance: float) -> int:
    """The rank index a verdict reports: the decisive rank; else the first where the common subspace breaks copying
    (project out) or keeps it intact (keep only); else the largest swept rank."""
    if rank is not None:
        return result.ranks.index(rank)
    wanted = "breaks" if result.project_out else "intact"
    summary = result.summary["common subspace"]["err_change"]
    return next(
        (i for i in range(1, len(result.ranks)) if read_error_change(Interval.of(summary, i), tolerance) == wanted),
        len(result.ranks) - 1,
    )


def projection_key(result: ProjectionResult, rank: int | None, tolerance: float) -> KeyNumber:
    """The key number of claim 4: the project-out error gap, common subspace minus energy-matched control."""
    i = judged_index(result, rank, tolerance)
    return KeyNumber(
        f"top-1 error, projected out at rank {result.ranks[i]} ({result.fitting})",
        "common subspace minus energy-matched control",
        matched_gap(result, i),
    )


def _uninformative_text(result: ProjectionResult) -> str:
    """Say at which ranks some head's treatment subspace holds essentially all its energy ("" if none)."""
    bad = [(r, heads) for r, heads in zip(result.ranks, result.uninformative, strict=True) if heads]
    if not bad:
        return ""
    ranks = ", ".join(f"{r} ({', '.join(head_labels(heads))})" for r, heads in bad)
    return (
        f" Not informative at rank(s) {ranks}: there the common subspace holds at least {ESSENTIALLY_ALL:.0%} of "
        "those heads' energy, so every energy-matched subspace removes their whole range too."
    )


def _projection_sentence(result: ProjectionResult, rank: int | None, tolerance: float) -> str:
    """One sentence on one projection run: where it decides, with errors, energies and overlaps there."""
    summary = result.summary
    where = "keys (W_K)" if result.component == "QK" else "outputs (W_O)"
    heads = f"the {len(result.heads)} heads' {where}"
    if result.project_out:
        action = f"Projecting it out of {heads}"
        rule = (
            "breaks copying while a random subspace leaves it intact, and breaks it more than the energy-matched "
            "control"
        )
    else:
        action = f"Keeping only it in {heads}"
        rule = (
            "keeps copying intact while a random subspace breaks it, and keeps it better than the energy-matched "
            "control"
        )
    shown = judged_index(result, rank, tolerance)
    numbers = ", ".join(
        f"{s} error {format_interval(Interval.of(summary[s]['err'], shown))} "
        f"({result.energy[s][shown]:.0%} of the energy {result.energy_word})"
        for s in SUBSPACES
    )
    gap = format_interval(matched_gap(result, shown), signed=True)
    overlap = f"the matched subspaces' overlap with the common one {result.overlap['energy-matched'][shown]:.2f}"
    at = f"rank {result.ranks[shown]}: {numbers}; gap common minus matched {gap}; {overlap}"
    if rank is None:
        return (
            f"{action} never {rule} at two consecutive swept ranks up to rank {result.ranks[-1]} (at {at})."
            f"{_uninformative_text(result)}"
        )
    unedited = format_interval(Interval.of(summary["common subspace"]["err"], 0))
    return (
        f"{action} first {rule} at ranks {rank} and the next one swept (at {at}; unedited {unedited})."
        f"{_uninformative_text(result)}"
    )


def fitting_words(result: ProjectionResult) -> str:
    """How the subspace was fitted, in words, with the leakage that the scheme leaves."""
    if result.fitting == "in-sample":
        return f"in-sample from the {len(result.IH_proj)} IHs (circular where they are also edited)"
    if not any(h in result.IH_proj for h in result.heads):
        return f"fitted on all {len(result.IH_proj)} IHs, none of which is edited (every scheme gives this plan)"
    fitted = "; ".join(
        f"{', '.join(head_labels(g['edited']))} edited with the subspace of {', '.join(head_labels(g['fitted_on']))}"
        for g in result.plan
    )
    if result.fitting == "leave one layer out":
        return f"left one layer out: each edited head gets the subspace of the IHs of the other layers ({fitted})"
    shared = [
        label
        for g in result.plan
        if {h[0] for h in g["edited"]} & {h[0] for h in g["fitted_on"]}
        for label in head_labels(g["edited"])
    ]
    leak = (
        f"; this leaks through same-layer siblings: {', '.join(shared)} got a subspace fitted on IHs of their own "
        "layer, which read the same residual"
        if shared
        else ""
    )
    return f"cross-fitted in {FOLDS} alternate folds ({fitted}){leak}"


def _alternatives_line(judged: ProjectionResult, others: list[ProjectionResult], tolerance: float) -> str:
    """One line comparing the judged scheme's project-out numbers with the other schemes' at the same rank."""
    i = judged_index(judged, decisive_rank(judged, tolerance=tolerance), tolerance)
    rank = judged.ranks[i]
    parts = []
    for result in [judged, *others]:
        if result.untested or rank not in result.ranks:
            continue
        j = result.ranks.index(rank)
        err = format_interval(Interval.of(result.summary["common subspace"]["err"], j))
        parts.append(
            f"{result.fitting}: common {err}, gap to matched {format_interval(matched_gap(result, j), signed=True)}"
        )
    return f"Project out at rank {rank}, fitting schemes side by side (error; gap common minus matched): " + "; ".join(
        parts
    )


def projection_verdict(
    runs: dict[bool, ProjectionResult],
    judgement: ProjectionJudgement,
    *,
    tolerance: float,
    model: str = "",
    alternatives: list[ProjectionResult] = (),
) -> Verdict:
    """Claim 4's verdict for one component in words; `runs` maps project_out (True, False) to the judged scheme's
    result; `alternatives`: project-out runs of the other fitting schemes, reported beside it, not judged."""
    claim = projection_claim(judgement.component)
    scope = SCOPE[judgement.component]
    out = runs[True]
    if out.untested or runs[False].untested:
        text = f"Nothing to edit: {judgement.why}"
        return Verdict(claim, "not tested", text, caveat="not tested on this model.", model=model, scope=scope)
    killed = (
        f"Projecting out kills copying (mean error >= {KILLED}) from rank {judgement.killed}"
        if judgement.killed is not None
        else f"Projecting out never kills copying (mean error >= {KILLED})"
    )
    text = (
        f"The common subspace: top right singular directions of stacked W_QK of IHs, {fitting_words(out)}. "
        + " ".join(_projection_sentence(runs[o], judgement.decisive[o], tolerance) for o in (True, False))
        + f" {killed}; the error levels off at {judgement.plateau:.2f} over the upper half of the ranks."
    )
    details = [f"Not read: {ONE_REPETITION}"] if out.settings.n_exp < 2 else []
    if judgement.why and out.settings.n_exp >= 2:
        details.append(f"Capped at partly supported: {judgement.why}")
    if alternatives:
        details.append(_alternatives_line(out, list(alternatives), tolerance) + f". Judged on {out.fitting}.")
    details += [
        f"A change in top-1 error counts as breaking copying when its 95% interval lies above +{tolerance:.2f}, "
        "as harmless when it lies below. Correction for scanning ranks: a rank decides only when the next swept "
        f"rank decides too. {out.settings.n_exp} repetitions of {out.settings.batch_size} sequences."
    ]
    caveat = f"energy-matched per head; fitted: {out.fitting}; weights edited directly (keys or outputs only)."
    if judgement.killed is None:
        caveat = f"copying is never killed (plateau {judgement.plateau:.2f}); " + caveat
    key = projection_key(out, judgement.decisive[True], tolerance)
    decisive = {o: judgement.decisive[o] or "none" for o in (True, False)}
    summary = (
        f"{killed}; the first decisive rank is {decisive[True]} for projecting out and {decisive[False]} for "
        "keeping only."
    )
    return Verdict(claim, judgement.label, text, details, caveat, model, scope, key, summary)


def projection_what_we_see(results: list[ProjectionResult], judgements: dict[str, ProjectionJudgement]) -> Paragraph:
    """A paragraph from the numbers: per edit, the errors of every condition at the largest rank, and the labels."""
    parts = []
    for result in results:
        if result.untested:
            parts.append(
                f"{result.component} {'out' if result.project_out else 'keep'}: not tested ({result.untested})"
            )
            continue
        errors = ", ".join(f"{s} {float(result.summary[s]['err']['mean'][-1]):.2f}" for s in SUBSPACES)
        action = "project out" if result.project_out else "keep only"
        parts.append(f"{result.component} {action} ({result.fitting}), rank {result.ranks[-1]}: error {errors}")
    labels = ", ".join(f"{c}: **{j.label}**" for c, j in judgements.items())
    return Paragraph("**What we see.** " + "; ".join(parts) + f". Verdicts: {labels}.")
