"""Claim 4: projecting the IHs' common `W_qk` subspace out of keys (or shifting-head outputs) disables copying.

The common subspace: top right singular vectors `V_r` of the vertical stack of `W_qk` over `IH_proj`;
`P = V_r V_r^T`. QK edit: `W_k <- (I - P) W_k` (out) or `P W_k` (keep only); OV edit: the same on `W_o`.
Control: a fresh random subspace of the same rank in each repetition. Experiments take the heads they are
given; with no heads to span the subspace or to edit, the result is "not tested" and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.checks import integer
from ihlib.copying import CopyingSettings, condition_summary, per_repetition, pred_probs
from ihlib.edits import check_component, model_heads, projection_edit
from ihlib.errors import IHLibError
from ihlib.factored import random_orthonormal, stacked_qk_svd, subspace_projector
from ihlib.models import AnyGPT2
from ihlib.stats import at, reading
from ihlib.weights import check_w_all

SUBSPACES = ("common subspace", "random subspace")
DEFAULT_SETTINGS = CopyingSettings(n_exp=5)


def common_subspace(W_all: torch.Tensor, heads: list, rank: int) -> torch.Tensor:
    """Return `V_r` `(d_model, rank)`: the orthonormal top-`rank` right singular vectors of the stacked `W_qk`."""
    _, V = stacked_qk_svd(W_all, heads)
    rank = integer(rank, "rank (min(d_model, K * d_head) at most)", low=1, high=V.shape[1])
    return V[:, :rank]


def rank_sweep(max_rank: int, step: int, n_available: int) -> list[int]:
    """Return the ranks `[0, step, 2 step, ..., <= max_rank]` (0 = unedited), validated against `n_available`."""
    if not 1 <= int(step) <= int(max_rank) <= n_available:
        raise IHLibError(
            f"Need 1 <= step <= max_rank <= {n_available} (min(d_model, len(IH_proj) * d_head)); "
            f"got step={step}, max_rank={max_rank}."
        )
    return [0, *range(int(step), int(max_rank) + 1, int(step))]


@dataclass
class ProjectionResult:
    """A rank sweep of one projection edit: probs and errs `{subspace: (n_ranks, n_exp, batch, n_positions)}`.

    `untested` says why nothing was run (no heads to span the subspace or to edit); then the arrays are empty.
    """

    component: str
    project_out: bool
    IH_proj: list[list[int]]
    heads: list[list[int]]
    ranks: list[int]
    settings: CopyingSettings
    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    stack_energy_at_rank: list[float]
    untested: str | None = None

    @property
    def name(self) -> str:
        """File stem: `project_{component}_{out|keep}_K0{..}_K{..}_T{seg_len}`."""
        action = "out" if self.project_out else "keep"
        return f"project_{self.component}_{action}_K0{len(self.IH_proj)}_K{len(self.heads)}_T{self.settings.seg_len}"

    @property
    def summary(self) -> dict:
        """Per subspace: mean and 95% interval `(n_ranks,)` of error, probability and change from the unedited model."""
        if self.untested:
            return {}
        return condition_summary(self.probs, self.errs, per_repetition(self.errs["common subspace"][0]))

    def record(self) -> dict:
        """Settings, heads, ranks, stack energy and summaries, as saved to JSON."""
        return {
            "experiment": "project",
            "component": self.component,
            "project_out": self.project_out,
            "ranks": self.ranks,
            "IH_proj": self.IH_proj,
            "heads": self.heads,
            "stack_energy_at_rank": self.stack_energy_at_rank,
            **self.settings.record(),
            "summary": self.summary,
            "untested": self.untested,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sample probabilities and errors by subspace."""
        arrays = {f"probs_{c.replace(' ', '_')}": v for c, v in self.probs.items()}
        return arrays | {f"errs_{c.replace(' ', '_')}": v for c, v in self.errs.items()}


def _projection_runs(
    model: AnyGPT2,
    settings: CopyingSettings,
    V_common: torch.Tensor,
    heads: list[list[int]],
    ranks: list[int],
    component: str,
    project_out: bool,
    chunk_size: int,
    progress: bool,
) -> tuple[dict, dict]:
    """Score the common and a random subspace at every rank on every batch: `{subspace: (n_ranks, n_exp, b, p)}`."""
    batches, positions, n_exp = settings.batches(), settings.positions(), settings.n_exp
    scored = {s: [[None] * n_exp for _ in ranks] for s in SUBSPACES}
    bar = tqdm(total=n_exp * (2 * len(ranks) - 1), desc=f"project {component}", disable=not progress)
    for r, ids in enumerate(batches):
        unedited = pred_probs(model, ids, positions, chunk_size)
        bar.update()
        for s in SUBSPACES:
            scored[s][0][r] = unedited
        for i, rank in enumerate(ranks[1:], start=1):
            rng = np.random.default_rng([settings.seed, r, rank])
            bases = {
                "common subspace": V_common[:, :rank],
                "random subspace": random_orthonormal(rng, len(V_common), rank),
            }
            for s, V in bases.items():
                with projection_edit(model, heads, subspace_projector(V, project_out=project_out), component):
                    scored[s][i][r] = pred_probs(model, ids, positions, chunk_size)
                bar.update()
    bar.close()
    probs = {s: np.array([[p for p, _ in row] for row in rows]) for s, rows in scored.items()}
    errs = {s: np.array([[e for _, e in row] for row in rows]) for s, rows in scored.items()}
    return probs, errs


def _untested_reason(IH_proj: list, heads: list, component: str) -> str | None:
    """Say why a projection cannot be tested (no IHs to span the subspace, no heads to edit), or None."""
    kind = "induction" if component == "QK" else "shifting"
    if not IH_proj:
        return "no head counts as an induction head, so there is no common subspace to project."
    if not heads:
        return f"no head counts as a {kind} head, so there is no head to edit."
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
    settings: CopyingSettings = DEFAULT_SETTINGS,
    chunk_size: int = 64,
    progress: bool = True,
) -> ProjectionResult:
    """Project the common subspace of `IH_proj`'s `W_qk` out of (or keep only it in) `heads`' `W_k` (QK) or `W_o` (OV).

    Sweeps rank 0 (unedited), step, ..., max_rank; the control projects a fresh random subspace of the
    same rank in each repetition. Empty `IH_proj` or `heads` give an untested result, without forward passes.
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
    untested = _untested_reason(IH_proj, heads, component)
    if untested:
        return ProjectionResult(component, project_out, IH_proj, heads, [], settings, {}, {}, [], untested)
    S, V_full = stacked_qk_svd(W_all, IH_proj)
    ranks = rank_sweep(max_rank, step, V_full.shape[1])
    probs, errs = _projection_runs(
        model, settings, V_full[:, : ranks[-1]], heads, ranks, component, project_out, chunk_size, progress
    )
    energy = (S**2).cumsum(0) / (S**2).sum()
    stack_energy = [float(energy[r - 1]) if r else 0.0 for r in ranks]
    return ProjectionResult(component, project_out, IH_proj, heads, ranks, settings, probs, errs, stack_energy)


def decisive_rank(result: ProjectionResult, *, tolerance: float = 0.1) -> int | None:
    """First rank at which the common subspace decides and the random one does not, or None.

    Project out: the common subspace breaks copying while a random one leaves it intact. Keep only: the
    common subspace keeps copying intact while a random one breaks it. Readings as in `stats.reading`.
    """
    if result.untested:
        return None
    wanted = ("breaks", "intact") if result.project_out else ("intact", "breaks")
    summary = result.summary
    for i, rank in enumerate(result.ranks):
        found = tuple(reading(at(summary[s]["err_change"], i), tolerance) for s in SUBSPACES)
        if rank > 0 and found == wanted:
            return rank
    return None


@dataclass(frozen=True)
class ProjectionJudgement:
    """Claim 4's rule for one component: the label, the decisive ranks (out, keep), and why when not tested."""

    component: str
    label: str
    decisive: dict[bool, int | None]
    why: str = ""


def judge_projection(results: list[ProjectionResult], *, tolerance: float = 0.1) -> dict[str, ProjectionJudgement]:
    """Claim 4 per component: supported when projecting out breaks copying and keeping only suffices (each at some
    rank where a random subspace does not), partly when one of the two holds, not supported otherwise; not tested
    with one repetition or when the edit could not run (`ProjectionResult.untested`).
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
            judgements[component] = ProjectionJudgement(component, "not tested", decisive, untested)
        elif runs[True].settings.n_exp < 2:
            judgements[component] = ProjectionJudgement(component, "not tested", decisive, "one repetition")
        else:
            found = sum(rank is not None for rank in decisive.values())
            label = ("not supported", "partly supported", "supported")[found]
            judgements[component] = ProjectionJudgement(component, label, decisive)
    return judgements
