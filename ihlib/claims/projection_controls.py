"""Claim 4's fitting schemes and its energy-matched control.

Fitting schemes (which IHs fit the subspace an edited head gets), from most to least leakage:

- "in-sample": all of `IH_proj` (circular where an edited head is one of them);
- "alternate folds": `IH_proj` split alternately down the ranking into two folds; an edited IH gets the other fold's
  subspace, so it never helped fit its own, but its same-layer siblings may have (they read the same residual);
- "leave one layer out": an edited head in layer L gets the subspace of the IHs outside layer L; it exists when every
  edited head has such IHs (not when all IHs share the edited heads' one layer).

Energy of a subspace `U (d_model, r)` in one head: `trace(U^T C U)` with `C = W_k (W_q^T W_q) W_k^T` (QK, the key
side of `W_qk`) or `C = W_o (W_v^T W_v) W_o^T` (OV, the output side of `W_ov`); its share is that over `trace(C)`.

The energy-matched control gives each edited head, at each rank, a rank-r subspace that holds the same share of
that head's energy as the subspace the treatment gives it (same fitting scheme), but is not that subspace: on the
path `U(t) = orth(cos t T G + sin t R)` for `t` in [0, pi/2] and `orth(cos s R + sin s N)`, `s = t - pi/2`, for
`t` in [pi/2, pi] (`T` the head's top-r directions, `G` a random rotation, `R` a random subspace, `N` a random
subspace of the null space of `C`) the share falls from the largest any rank-r subspace holds to 0, and `t` is
found by bisection. Where the treatment's subspace holds at least `ESSENTIALLY_ALL` of a head's energy, every
matched subspace contains that head's whole range too, so the two edits act alike on the head: "not informative".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.factored import random_orthonormal, single_threaded, stacked_qk_svd
from ihlib.model.errors import IHLibError
from ihlib.model.validation import integer
from ihlib.model.weights import K, O, Q, V

FITTINGS = ("in-sample", "alternate folds", "leave one layer out")  # most leakage first
FOLDS = 2
ESSENTIALLY_ALL = 0.99  # a subspace holding this share of a head's energy holds its whole range: not informative
COINCIDES = 0.9  # a matched control overlapping the treatment this much is the treatment: the gap cannot be nonzero
MATCH_TOLERANCE = 1e-3  # bisection stops when the matched share is within this relative error of the target
BISECTION_STEPS = 60


def folds(IH_proj: list, n_folds: int = FOLDS) -> list[list[list[int]]]:
    """Split `IH_proj` (best first) into `n_folds` folds, alternately down the ranking."""
    n_folds = integer(n_folds, "n_folds", low=1)
    return [IH_proj[f::n_folds] for f in range(n_folds)]


@dataclass(frozen=True)
class EditPlan:
    """Which subspace each edited head gets: `groups[i] = (edited heads, fitted on heads, V (d_model, m))`."""

    groups: list[tuple[list[list[int]], list[list[int]], torch.Tensor]]
    fitting: str

    @property
    def cross_fit(self) -> bool:
        """Whether the scheme fits on heads other than the edited ones ("alternate folds", "leave one layer out")."""
        return self.fitting != "in-sample"

    @property
    def max_rank(self) -> int:
        """The largest rank every group's subspace has."""
        return min(int(V.shape[1]) for _, _, V in self.groups)

    def subspace_of(self, head: list[int]) -> torch.Tensor:
        """The basis `(d_model, m)` the plan gives `head`."""
        return next(V for edited, _, V in self.groups if head in edited)

    def record(self) -> list[dict]:
        """JSON-friendly: the edited heads and the heads their subspace was fitted on."""
        return [{"edited": edited, "fitted_on": fitted} for edited, fitted, _ in self.groups]


def fitting_unavailable(IH_proj: list, heads: list, fitting: str) -> str | None:
    """Say why `fitting` cannot run for these heads (None when it can)."""
    if fitting not in FITTINGS:
        raise IHLibError(f"Unknown fitting {fitting!r}: use one of {', '.join(FITTINGS)}.")
    if fitting == "alternate folds" and len(IH_proj) < FOLDS and any(h in IH_proj for h in heads):
        return f"only {len(IH_proj)} IH spans the subspace and it is also edited: nothing to fit on but itself"
    if fitting == "leave one layer out":
        alone = sorted({h[0] for h in heads if not [g for g in IH_proj if g[0] != h[0]]})
        if alone:
            return f"every IH sits in layer {alone[0]}, the edited heads' own layer: no other layer to fit on"
    return None


def available_fittings(IH_proj: list, heads: list) -> list[str]:
    """The fitting schemes that can run for these heads, most leakage first."""
    return [f for f in FITTINGS if fitting_unavailable(IH_proj, heads, f) is None]


def compared_fittings(IH_proj: list, heads: list, judged: str) -> list[str]:
    """The schemes to report beside the `judged` one: the others that run and give a different plan (none when no
    edited head is an IH, or nothing is edited: then every scheme fits on all IHs)."""
    if not IH_proj or not any(h in IH_proj for h in heads):
        return []
    return [f for f in available_fittings(IH_proj, heads) if f != judged]


def least_leakage(IH_proj: list, heads: list) -> str:
    """The cross-fitted scheme with the least leakage: leave one layer out where it exists, else alternate folds
    (which may itself be unable to run: `fitting_unavailable` says why)."""
    return "leave one layer out" if fitting_unavailable(IH_proj, heads, "leave one layer out") is None else FITTINGS[1]


def edit_plan(W_all: torch.Tensor, IH_proj: list, heads: list, *, fitting: str = "alternate folds") -> EditPlan:
    """Assign each edited head the subspace fitted by `fitting` (module docstring); raise where it cannot run."""
    why = fitting_unavailable(IH_proj, heads, fitting)
    if why:
        raise IHLibError(f"{fitting} cannot run here: {why}. Use one of {available_fittings(IH_proj, heads)}.")
    if fitting == "in-sample":
        return EditPlan([(heads, IH_proj, stacked_qk_svd(W_all, IH_proj)[1])], fitting)
    if fitting == "leave one layer out":
        groups = []
        for layer in sorted({h[0] for h in heads}):
            fitted = [h for h in IH_proj if h[0] != layer]
            groups.append(([h for h in heads if h[0] == layer], fitted, stacked_qk_svd(W_all, fitted)[1]))
        return EditPlan(groups, fitting)
    parts = folds(IH_proj)
    groups = []
    for f, part in enumerate(parts):
        edited = [h for h in heads if h in part]
        if edited:
            fitted = [h for g, other in enumerate(parts) if g != f for h in other]
            groups.append((edited, fitted, stacked_qk_svd(W_all, fitted)[1]))
    outside = [h for h in heads if h not in IH_proj]
    if outside:
        groups.append((outside, IH_proj, stacked_qk_svd(W_all, IH_proj)[1]))
    return EditPlan(groups, fitting)


def energy_matrix(W_all: torch.Tensor, head: list[int], component: str) -> torch.Tensor:
    """`C (d_model, d_model)` float64 whose `trace(U^T C U)` is the energy of subspace `U` in `head` (docstring)."""
    W = W_all.detach().cpu()[head[0], head[1]].double()
    inner, edited = (W[Q], W[K]) if component == "QK" else (W[V], W[O])
    return edited @ (inner.T @ inner) @ edited.T


def energy_share(C: torch.Tensor, U: torch.Tensor) -> float:
    """Share of `trace(C)` held by the orthonormal basis `U (d_model, r)`."""
    return float(torch.trace(U.T @ C @ U) / torch.trace(C))


def overlap(A: torch.Tensor, B: torch.Tensor) -> float:
    """Mean squared cosine of the principal angles between orthonormal bases `A (d, r)` and `B (d, r)`."""
    return float((A.T @ B).square().sum() / A.shape[1])


@dataclass(frozen=True)
class MatchedSubspace:
    """One head's matched control at one rank: basis `U (d_model, r)`, the share it holds and the target share,
    its `overlap` with the treatment's subspace, and whether the rank is informative for this head."""

    U: torch.Tensor
    share: float
    target: float
    overlap: float
    informative: bool

    @property
    def coincides(self) -> bool:
        """True when every subspace holding the target share is (almost) the treatment's own (overlap >= `COINCIDES`):
        the head's energy lies in the treatment's subspace, so no energy-matched control can differ from it."""
        return self.overlap >= COINCIDES


@dataclass(frozen=True)
class Eigenbasis:
    """A head's energy matrix `C (d_model, d_model)` diagonalised once: `vectors` (columns, largest eigenvalue
    first) and `rank` (the columns from `rank` on span its null space)."""

    vectors: torch.Tensor
    rank: int


@single_threaded()
def eigenbasis(C: torch.Tensor) -> Eigenbasis:
    """The `Eigenbasis` of the symmetric `C` from one `eigh` (reuse it for every rank and repetition); the rank counts
    eigenvalues above `matrix_rank`'s default tolerance, `d x eps x` the largest in magnitude."""
    values, vectors = torch.linalg.eigh(C)
    tolerance = values.abs().max() * C.shape[-1] * torch.finfo(C.dtype).eps
    return Eigenbasis(vectors.flip(-1), int((values.abs() > tolerance).sum()))


class _Path:
    """The path `U(t)`, `t` in [0, pi], from a head's top-r directions through a random subspace to its null space."""

    def __init__(self, basis: Eigenbasis, rank: int, rng: np.random.Generator) -> None:
        vectors = basis.vectors
        d = vectors.shape[0]
        self.top = vectors[:, :rank] @ random_orthonormal(rng, rank, rank)
        self.random = random_orthonormal(rng, d, rank)
        null = vectors[:, basis.rank :]
        free = null.shape[1]
        self.null = null @ random_orthonormal(rng, free, rank) if free >= rank else self.random

    def at(self, t: float) -> torch.Tensor:
        """The orthonormal basis `U(t)`."""
        if t <= math.pi / 2:
            mixed = math.cos(t) * self.top + math.sin(t) * self.random
        else:
            s = t - math.pi / 2
            mixed = math.cos(s) * self.random + math.sin(s) * self.null
        return torch.linalg.qr(mixed)[0]


def matched_subspace(
    C: torch.Tensor, V: torch.Tensor, rng: np.random.Generator, *, basis: Eigenbasis | None = None
) -> MatchedSubspace:
    """A rank-r basis holding the same share of `trace(C)` as `V (d_model, r)`, found by bisection on `_Path`;
    `basis`: `eigenbasis(C)` when already computed (it is the same for every rank and repetition of a head)."""
    rank = V.shape[1]
    target = energy_share(C, V)
    path = _Path(basis if basis is not None else eigenbasis(C), rank, rng)
    low, high = 0.0, math.pi  # share(low) >= target >= share(high)
    U = path.at(low)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        U = path.at(middle)
        share = energy_share(C, U)
        if abs(share - target) <= MATCH_TOLERANCE * target:
            break
        low, high = (middle, high) if share > target else (low, middle)
    share = energy_share(C, U)
    matched = abs(share - target) <= 0.01 * target + 1e-9
    return MatchedSubspace(U, share, target, overlap(V, U), matched and target < ESSENTIALLY_ALL)
