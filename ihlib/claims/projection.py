"""Claim 4: projecting the IHs' common `W_qk` subspace out of keys (or shifting-head outputs) disables copying.

The common subspace: top right singular vectors `V_r` of the vertical stack of `W_qk` over IHs; `P = V_r V_r^T`.
QK edit: `W_k <- (I - P) W_k` (out) or `P W_k` (keep only); OV edit: the same on `W_o`.

Fitting schemes (`projection_controls`): in-sample, alternate folds, leave one layer out; by default the one with
the least leakage that exists for the heads edited. Fewer than 2 IHs and no other layer: the edit is "not tested".

Controls at every rank r: a fresh random subspace of rank r in each repetition, and an energy-matched one
(`projection_controls.matched_subspace`): per edited head, a subspace that is not the treatment's but holds the
same share of that head's `||W_qk||_F^2` (QK) or `||W_ov||_F^2` (OV) as the treatment's subspace for that head.
A rank where some head's treatment subspace holds essentially all its energy is not informative for that head.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.claims.projection_controls import (
    EditPlan,
    edit_plan,
    eigenbasis,
    energy_matrix,
    fitting_unavailable,
    least_leakage,
    matched_subspace,
    overlap,
)
from ihlib.core.copying import CopyingSettings, condition_summary, per_repetition, pred_probs
from ihlib.core.edits import check_component, model_heads, projection_edit
from ihlib.core.factored import random_orthonormal, stacked_qk_svd, subspace_projector
from ihlib.core.stats import Interval, mean_ci, read_error_change
from ihlib.model.errors import IHLibError, ParameterError
from ihlib.model.loading import AnyGPT2
from ihlib.model.validation import integer
from ihlib.model.weights import K, O, Q, V, check_w_all

SUBSPACES = ("common subspace", "random subspace", "energy-matched")
DEFAULT_SETTINGS = CopyingSettings(n_exp=5)
KILLED = 0.9  # copying counts as killed when the mean top-1 error reaches this


def common_subspace(W_all: torch.Tensor, heads: list, rank: int) -> torch.Tensor:
    """Return `V_r` `(d_model, rank)`: the orthonormal top-`rank` right singular vectors of the stacked `W_qk`."""
    _, V = stacked_qk_svd(W_all, heads)
    rank = integer(rank, "rank (min(d_model, K * d_head) at most)", low=1, high=V.shape[1])
    return V[:, :rank]


def rank_sweep(max_rank: int, step: int, n_available: int) -> list[int]:
    """Return the ranks `[0, step, 2 step, ..., <= max_rank]` (0 = unedited), validated against `n_available`."""
    step, max_rank = integer(step, "step", low=1), integer(max_rank, "max_rank", low=1)
    n_available = integer(n_available, "n_available", low=0)
    if step > max_rank:
        raise ParameterError(f"step={step} is larger than max_rank={max_rank}: choose step <= max_rank.")
    if max_rank > n_available:
        raise ParameterError(
            f"max_rank={max_rank} exceeds the {n_available} directions available (min(d_model, number of IHs "
            f"fitted * d_head); cross-fitted, the IHs of one fold): choose max_rank <= {n_available}."
        )
    return [0, *range(step, max_rank + 1, step)]


@dataclass
class ProjectionResult:
    """A rank sweep of one projection edit: probs and errs `{condition: (n_ranks, n_exp, batch, n_positions)}`.

    `energy[condition]` `(n_ranks,)`: share of the edited heads' summed `||W_qk||_F^2` (QK) or `||W_ov||_F^2` (OV)
    that the edit removes (project out) or keeps (keep only), mean over repetitions. `overlap[condition]`
    `(n_ranks,)`: mean squared cosine of the principal angles between the condition's subspace and the treatment's,
    mean over edited heads and repetitions. `uninformative[i]`: the heads for which rank `ranks[i]` is not
    informative (the treatment's subspace holds essentially all their energy, or no matched subspace was found);
    `coinciding[i]`: the heads whose energy-matched control at rank `ranks[i]` is the treatment's subspace itself
    (`MatchedSubspace.coincides`), where the rank is judged against the random subspace alone.
    `fitting`: the scheme (`projection_controls.FITTINGS`). `untested` says why nothing was run; then arrays are empty.
    """

    component: str
    project_out: bool
    IH_proj: list[list[int]]
    heads: list[list[int]]
    ranks: list[int]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    energy: dict[str, list[float]]
    plan: list[dict]
    cross_fit: bool
    untested: str | None = None
    fitting: str = "alternate folds"
    overlap: dict[str, list[float]] = field(default_factory=dict)
    uninformative: list[list[list[int]]] = field(default_factory=list)
    coinciding: list[list[list[int]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """File stem: `project_{component}_{out|keep}_K0{..}_K{..}_T{seg_len}` and the fitting scheme when not the
        default one (`_in_sample`, `_alternate_folds`, `_leave_one_layer_out`)."""
        action = "out" if self.project_out else "keep"
        stem = f"project_{self.component}_{action}_K0{len(self.IH_proj)}_K{len(self.heads)}_T{self.settings.seg_len}"
        return f"{stem}_{self.fitting.replace(' ', '_').replace('-', '_')}"

    @property
    def energy_word(self) -> str:
        """ "removed" (project out) or "kept" (keep only): what `energy` measures."""
        return "removed" if self.project_out else "kept"

    @property
    def summary(self) -> dict:
        """Per condition: mean and 95% interval `(n_ranks,)` of error, probability and change from unedited."""
        if self.untested:
            return {}
        return condition_summary(self.probs, self.errs, per_repetition(self.errs["common subspace"][0]))

    def record(self) -> dict:
        """Settings, heads, plan, ranks, energies and summaries, as saved to JSON."""
        return {
            "experiment": "project",
            "component": self.component,
            "project_out": self.project_out,
            "cross_fit": self.cross_fit,
            "fitting": self.fitting,
            "ranks": self.ranks,
            "IH_proj": self.IH_proj,
            "heads": self.heads,
            "plan": self.plan,
            f"energy_{self.energy_word}": self.energy,
            "overlap_with_treatment": self.overlap,
            "uninformative": self.uninformative,
            "matched_control_coincides": self.coinciding,
            **self.settings.record(),
            "summary": self.summary,
            "untested": self.untested,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by condition."""
        arrays = {f"probs_{c.replace(' ', '_')}": v for c, v in self.probs.items()}
        return arrays | {f"errs_{c.replace(' ', '_')}": v for c, v in self.errs.items()}


def head_energy(W_all: torch.Tensor, heads: list, component: str, P: torch.Tensor | None = None) -> torch.Tensor:
    """`||W_qk P||_F^2` (QK, keys read `P x`) or `||P W_ov||_F^2` (OV) per head `(n,)`; `P` projector or None (no edit).

    Factored: `trace((W_q^T W_q)(W_k^T P W_k))`, `trace((W_v^T W_v)(W_o^T P W_o))`; `P (n, d, d)` or `(d, d)`.
    """
    layers, cols = torch.tensor(heads).T
    W = W_all.detach().cpu()[layers, cols].double()
    inner, edited = (W[:, Q], W[:, K]) if component == "QK" else (W[:, V], W[:, O])
    right = edited.mT @ edited if P is None else edited.mT @ P @ edited
    return ((inner.mT @ inner) * right).sum((-2, -1))


@dataclass(frozen=True)
class _RankEdits:
    """One rank of one repetition: per condition the edits `[(heads, P)]`, the overlaps with the treatment's
    subspace per edited head, the heads for which the rank is not informative, and those whose matched control
    coincides with the treatment."""

    edits: dict[str, list[tuple[list[list[int]], torch.Tensor]]]
    overlaps: dict[str, float]
    uninformative: list[list[int]]
    coinciding: list[list[int]]


def _rank_edits(
    plan: EditPlan, rank: int, heads: list, energies: list[tuple], rng: np.random.Generator, project_out: bool
) -> _RankEdits:
    """The edits of every condition at `rank`: the plan's subspaces, one random subspace, each head's matched one
    (`energies`: per head, its energy matrix and `eigenbasis`)."""
    treatment = [plan.subspace_of(head)[:, :rank] for head in heads]
    random_V = random_orthonormal(rng, treatment[0].shape[0], rank)
    matched = [matched_subspace(C, V, rng, basis=basis) for (C, basis), V in zip(energies, treatment, strict=True)]
    per_head = {"common subspace": treatment, "energy-matched": [m.U for m in matched]}
    edits = {
        s: [([h], subspace_projector(U, project_out=project_out)) for h, U in zip(heads, bases, strict=True)]
        for s, bases in per_head.items()
    }
    edits["random subspace"] = [(heads, subspace_projector(random_V, project_out=project_out))]
    overlaps = {
        "common subspace": 1.0,
        "random subspace": float(np.mean([overlap(V, random_V) for V in treatment])),
        "energy-matched": float(np.mean([m.overlap for m in matched])),
    }
    pairs = list(zip(heads, matched, strict=True))
    uninformative = [h for h, m in pairs if not m.informative]
    return _RankEdits(edits, overlaps, uninformative, [h for h, m in pairs if m.informative and m.coincides])


def _energy_share(W_all: torch.Tensor, edits: list, component: str, total: float) -> float:
    """Share of `total` that `edits` `[(heads, P)]` leave in the edited heads."""
    return float(sum(head_energy(W_all, heads, component, P).sum() for heads, P in edits) / total)


def _projection_runs(
    model: AnyGPT2,
    W_all: torch.Tensor,
    settings: CopyingSettings,
    plan: EditPlan,
    heads: list[list[int]],
    ranks: list[int],
    component: str,
    project_out: bool,
    chunk_size: int,
    progress: bool,
) -> tuple[dict, dict, dict, dict, list, list]:
    """Score every condition at every rank on every batch: `{condition: (n_ranks, n_exp, b, p)}`, energies,
    overlaps and, per rank, the heads for which it is not informative and those whose matched control coincides with
    the treatment (in any repetition)."""
    batches, positions, n_exp = settings.batches(), settings.positions(), settings.n_exp
    energies = [(C, eigenbasis(C)) for C in (energy_matrix(W_all, head, component) for head in heads)]
    total = float(head_energy(W_all, heads, component).sum())
    scored = {s: [[None] * n_exp for _ in ranks] for s in SUBSPACES}
    retained = {s: np.ones((len(ranks), n_exp)) for s in SUBSPACES}
    overlaps = {s: np.zeros((len(ranks), n_exp)) for s in SUBSPACES}
    uninformative: list[list[list[int]]] = [[] for _ in ranks]
    coinciding: list[list[list[int]]] = [[] for _ in ranks]
    bar = tqdm(total=n_exp * (len(SUBSPACES) * (len(ranks) - 1) + 1), desc=f"project {component}", disable=not progress)
    for r, ids in enumerate(batches):
        unedited = pred_probs(model, ids, positions, chunk_size)
        bar.update()
        for s in SUBSPACES:
            scored[s][0][r] = unedited
        for i, rank in enumerate(ranks[1:], start=1):
            rng = np.random.default_rng([settings.seed, r, rank])
            step = _rank_edits(plan, rank, heads, energies, rng, project_out)
            uninformative[i] += [h for h in step.uninformative if h not in uninformative[i]]
            coinciding[i] += [h for h in step.coinciding if h not in coinciding[i]]
            for s, edits in step.edits.items():
                with ExitStack() as stack:
                    for edited, P in edits:
                        stack.enter_context(projection_edit(model, edited, P, component))
                    scored[s][i][r] = pred_probs(model, ids, positions, chunk_size)
                retained[s][i, r] = _energy_share(W_all, edits, component, total)
                overlaps[s][i, r] = step.overlaps[s]
                bar.update()
    bar.close()
    probs = {s: np.array([[p for p, _ in row] for row in rows]) for s, rows in scored.items()}
    errs = {s: np.array([[e for _, e in row] for row in rows]) for s, rows in scored.items()}
    shares = {s: [float(x) for x in (1.0 - v if project_out else v).mean(1)] for s, v in retained.items()}
    overlap_means = {s: [float(x) for x in v.mean(1)] for s, v in overlaps.items()}
    return probs, errs, shares, overlap_means, uninformative, coinciding


def _untested_reason(IH_proj: list, heads: list, component: str, fitting: str) -> str | None:
    """Say why a projection cannot be tested (no IHs, no heads to edit, the fitting scheme cannot run), or None."""
    kind = "induction" if component == "QK" else "shifting"
    if not IH_proj:
        return "no head counts as an induction head, so there is no common subspace to project."
    if not heads:
        return f"no head counts as a {kind} head, so there is no head to edit."
    why = fitting_unavailable(IH_proj, heads, fitting)
    if why:
        return f"{fitting}: {why}; the in-sample subspace would be circular."
    return None


@torch.no_grad()
def project(
    model: AnyGPT2,
    W_all: torch.Tensor,
    IH_proj: list,
    heads: list,
    *,
    component: str = "QK",
    project_out: bool = True,
    max_rank: int = 100,
    step: int = 5,
    cross_fit: bool = True,
    fitting: str | None = None,
    settings: CopyingSettings = DEFAULT_SETTINGS,
    chunk_size: int = 64,
    progress: bool = True,
) -> ProjectionResult:
    """Project the common subspace of `IH_proj`'s `W_qk` out of (or keep only it in) `heads`' `W_k` (QK) or `W_o` (OV).

    Sweeps rank 0 (unedited), step, ..., max_rank (at most the smallest subspace of the plan); controls: a fresh
    random subspace and an energy-matched subspace per head per repetition. `fitting` (`FITTINGS`): default the
    scheme with the least leakage here, or "in-sample" when `cross_fit` is False. Empty `IH_proj` or `heads`, or
    a scheme that cannot run, give an untested result without forward passes.
    """
    check_component(component)
    check_w_all(W_all)
    cfg = model.config
    expected = (cfg.n_layer, cfg.n_head, 4, cfg.n_embd, cfg.n_embd // cfg.n_head)
    if tuple(W_all.shape) != expected:
        raise IHLibError(f"W_all has shape {tuple(W_all.shape)}, the model needs {expected}: use head_weights(model).")
    IH_proj = model_heads(model, IH_proj, "IH_proj") if len(IH_proj) else []
    heads = model_heads(model, heads) if len(heads) else []
    settings = settings.resolved(model)
    if fitting is None:
        fitting = least_leakage(IH_proj, heads) if cross_fit else "in-sample"
    untested = _untested_reason(IH_proj, heads, component, fitting)
    cross_fit = fitting != "in-sample"
    if untested:
        return ProjectionResult(
            component, project_out, IH_proj, heads, [], settings, {}, {}, {}, [], cross_fit, untested, fitting
        )
    plan = edit_plan(W_all, IH_proj, heads, fitting=fitting)
    ranks = rank_sweep(max_rank, step, plan.max_rank)
    probs, errs, energy, overlaps, uninformative, coinciding = _projection_runs(
        model, W_all, settings, plan, heads, ranks, component, project_out, chunk_size, progress
    )
    return ProjectionResult(
        component,
        project_out,
        IH_proj,
        heads,
        ranks,
        settings,
        probs,
        errs,
        energy,
        plan.record(),
        cross_fit,
        None,
        fitting,
        overlaps,
        uninformative,
        coinciding,
    )


CONSECUTIVE = 2  # a rank decides only when the next swept rank decides too (the correction for scanning ranks)


def _decides(result: ProjectionResult, i: int, tolerance: float) -> bool:
    """True when rank index `i` decides for the claim (see `decisive_rank`)."""
    if result.uninformative and result.uninformative[i]:
        return False
    summary = result.summary
    common, random = (read_error_change(Interval.of(summary[s]["err_change"], i), tolerance) for s in SUBSPACES[:2])
    gap = Interval.of(mean_ci(per_repetition(result.errs["common subspace"][i] - result.errs["energy-matched"][i])))
    coinciding = bool(result.coinciding and result.coinciding[i])
    if not result.project_out:
        return common == "intact" and random == "breaks" and (coinciding or gap.high < 0)
    return common == "breaks" and random == "intact" and (coinciding or gap.low > 0)


def coinciding_ranks(result: ProjectionResult) -> list[int]:
    """Swept ranks at which some head's energy-matched control coincides with the common subspace."""
    coinciding = result.coinciding or [[] for _ in result.ranks]
    return [rank for rank, heads in zip(result.ranks, coinciding, strict=True) if heads]


def decisive_rank(result: ProjectionResult, *, tolerance: float = 0.1) -> int | None:
    """First rank that decides for the claim at `CONSECUTIVE` consecutive swept ranks, or None.

    Project out: the common subspace breaks copying, a random one leaves it intact, and the common subspace
    breaks it more than the energy-matched control (paired 95% interval of the error gap above 0), which removes
    the same share of each head's energy. Keep only: the common subspace keeps copying intact while a random one
    breaks it, and it keeps copying better than the energy-matched control (gap below 0). A rank that is not
    informative for some edited head (`ProjectionResult.uninformative`) never decides; at a rank where some head's
    matched control coincides with the common subspace (`ProjectionResult.coinciding`: its energy lies there, so no
    control of equal energy can differ), the gap cannot come out either way and the random subspace alone decides.
    Readings as in `stats.read_error_change`. Requiring consecutive ranks is the correction for scanning ranks.
    """
    if result.untested:
        return None
    decides = [rank > 0 and _decides(result, i, tolerance) for i, rank in enumerate(result.ranks)]
    for i in range(len(decides) - CONSECUTIVE + 1):
        if all(decides[i : i + CONSECUTIVE]):
            return result.ranks[i]
    return None


def killed_rank(result: ProjectionResult, condition: str = "common subspace") -> int | None:
    """First swept rank at which the mean top-1 error of `condition` reaches `KILLED`, or None."""
    if result.untested:
        return None
    errors = result.summary[condition]["err"]["mean"]
    return next((rank for rank, e in zip(result.ranks, errors, strict=True) if rank > 0 and e >= KILLED), None)


def plateau(result: ProjectionResult, condition: str = "common subspace") -> float | None:
    """Mean top-1 error of `condition` over the upper half of the swept ranks (where a sweep levels off)."""
    if result.untested:
        return None
    errors = np.asarray(result.summary[condition]["err"]["mean"])[1:]
    return float(errors[len(errors) // 2 :].mean())


@dataclass(frozen=True)
class ProjectionJudgement:
    """Claim 4's rule for one component: label, decisive ranks (out, keep), the killed rank, plateau, and why."""

    component: str
    label: str
    decisive: dict[bool, int | None]
    killed: int | None = None
    plateau: float | None = None
    why: str = ""


def judge_projection(results: list[ProjectionResult], *, tolerance: float = 0.1) -> dict[str, ProjectionJudgement]:
    """Claim 4 per component: supported when projecting out and keeping only both decide (`decisive_rank`) and
    projecting out kills copying (error >= `KILLED`) at some rank; partly supported when one of the two decides,
    or both do but projecting out only reaches a plateau below `KILLED`; not supported when neither decides; not
    tested with one repetition or when the edit could not run (`ProjectionResult.untested`).
    """
    by_component: dict[str, dict[bool, ProjectionResult]] = {}
    for result in results:
        by_component.setdefault(result.component, {})[result.project_out] = result
    judgements = {}
    for component, runs in by_component.items():
        if set(runs) != {True, False}:
            raise IHLibError(f"judge_projection needs both a project-out and a keep-only run for {component}.")
        decisive = {out: decisive_rank(runs[out], tolerance=tolerance) for out in (True, False)}
        untested = runs[True].untested or runs[False].untested
        if untested:
            judgements[component] = ProjectionJudgement(component, "not tested", decisive, why=untested)
            continue
        numbers = dict(killed=killed_rank(runs[True]), plateau=plateau(runs[True]))
        if runs[True].settings.n_exp < 2:
            why = "one repetition"
            judgements[component] = ProjectionJudgement(component, "not tested", decisive, **numbers, why=why)
            continue
        found = sum(rank is not None for rank in decisive.values())
        label = ("not supported", "partly supported", "supported")[found]
        why = ""
        if label == "supported" and numbers["killed"] is None:
            label = "partly supported"
            why = f"projecting out never kills copying: the error levels off at {numbers['plateau']:.2f} < {KILLED}."
        why = " ".join(filter(None, [why, _coinciding_words(runs)]))
        judgements[component] = ProjectionJudgement(component, label, decisive, **numbers, why=why)
    return judgements


def _coinciding_words(runs: dict[bool, ProjectionResult]) -> str:
    """One sentence naming the ranks judged against the random subspace alone, or ""."""
    parts = [
        f"{ranks} ({'project out' if out else 'keep only'})"
        for out in (True, False)
        if (ranks := ", ".join(str(r) for r in coinciding_ranks(runs[out])))
    ]
    if not parts:
        return ""
    return (
        f"At ranks {' and '.join(parts)} the energy-matched control is the common subspace itself (the heads' "
        "energy lies there), so those ranks are judged against the random subspace alone."
    )
