"""A copy-row curriculum whose phases end when a measured condition holds (or at a cap), not at fixed step counts.

Each `Phase` says how the copy rows of the language model's batches run (which layers are switched off there,
whether the heads past `copy_heads` learn from them, how many rows of the batch they fill) and when the phase
ends: when, in each listed group of layers, one of the heads meant to become induction heads (heads
0..`copy_heads`-1) reaches an induction score of `bar`, but not before `min_steps` and at the latest after
`max_steps`. `PhaseClock` follows the phases during training and records when each one started.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ihlib.model.errors import IHLibError


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of the copy rows; it ends when each group of `until_induction_in` holds an induction head."""

    name: str
    silenced: tuple[tuple[int, ...], ...] = ((),)  # cycle of layer sets off on the copy rows: step s uses s % len
    all_heads: bool = False  # every head learns from the copy rows (else only heads 0..copy_heads-1)
    copy_fraction: float = 1.0  # share of each batch's rows that hold the copy task (1: copy rows only)
    until_induction_in: tuple[tuple[int, ...], ...] = ()  # groups of layers; () : the phase runs to its cap
    bar: float = 0.5  # induction score (ihlib.heads.scoring) that a head of each group must reach
    min_steps: int = 0
    max_steps: int | None = None  # the cap; None: the phase runs to the end of training

    def check(self, *, n_layer: int) -> None:
        """Raise `IHLibError` naming the setting when a layer lies outside 0..n_layer-1 or a share or cap is wrong."""
        layers = [layer for group in (*self.silenced, *self.until_induction_in) for layer in group]
        if not self.silenced or any(not 0 <= layer < n_layer for layer in layers):
            raise IHLibError(f"Phase {self.name!r}: give layers in 0..{n_layer - 1} and at least one silenced set.")
        if not 0.0 < self.copy_fraction <= 1.0:
            raise IHLibError(f"Phase {self.name!r}: copy_fraction={self.copy_fraction} must lie in (0, 1].")
        if self.max_steps is not None and self.max_steps < max(1, self.min_steps):
            raise IHLibError(f"Phase {self.name!r}: max_steps={self.max_steps} must be >= max(1, min_steps).")

    def layers_off(self, step: int) -> tuple[int, ...]:
        """The layers switched off on the copy rows of `step`."""
        return self.silenced[step % len(self.silenced)]

    def condition_met(self, induction: np.ndarray, *, copy_heads: int | None) -> bool:
        """Whether each group of layers holds a head among 0..copy_heads-1 with induction >= `bar` (`(n_layer, n_head)`
        scores); a phase without groups never meets it (it runs to its cap)."""
        if not self.until_induction_in:
            return False
        meant = induction[:, :copy_heads] if copy_heads is not None else induction
        return all(meant[list(group)].max() >= self.bar for group in self.until_induction_in)


def phase_from_record(record: dict) -> Phase:
    """Rebuild a `Phase` from its `dataclasses.asdict` mapping (JSON lists back to tuples)."""
    groups = {key: tuple(tuple(layers) for layers in record[key]) for key in ("silenced", "until_induction_in")}
    return Phase(**{**record, **groups})


class PhaseClock:
    """Follows a sequence of phases during training: which one runs at a step, and when each one started."""

    def __init__(self, phases: tuple[Phase, ...], *, copy_heads: int | None):
        if not phases:
            raise IHLibError("PhaseClock needs at least one phase.")
        self.phases = phases
        self.copy_heads = copy_heads
        self.index = 0
        self.started = 0
        self.history: list[dict] = [{"phase": phases[0].name, "step": 0, "why": "start"}]

    @property
    def current(self) -> Phase:
        """The phase running now."""
        return self.phases[self.index]

    def at(self, step: int) -> Phase:
        """The phase of `step`, after moving on from phases that reached their cap."""
        while self.index + 1 < len(self.phases) and self._capped(step):
            self._advance(step, "cap")
        return self.current

    def update(self, step: int, induction: np.ndarray) -> None:
        """Move on at `step` when the running phase has had `min_steps` and its condition holds on `induction`."""
        ran = step - self.started
        if self.index + 1 < len(self.phases) and ran >= self.current.min_steps:
            if self.current.condition_met(induction, copy_heads=self.copy_heads):
                self._advance(step, "condition")

    def _capped(self, step: int) -> bool:
        """Whether the running phase has run its `max_steps`."""
        cap = self.current.max_steps
        return cap is not None and step - self.started >= cap

    def _advance(self, step: int, why: str) -> None:
        """Start the next phase at `step`, recording why."""
        self.index += 1
        self.started = step
        self.history.append({"phase": self.current.name, "step": step, "why": why})


@dataclasses.dataclass(frozen=True)
class CopyRows:
    """How one batch's copy rows run: how many, which `(layer, head)` outputs are zeroed or pass without gradient,
    and the weight of their loss."""

    n_rows: int
    silenced: list[tuple[int, int]]
    detached: list[tuple[int, int]]
    weight: float


MEASURED_PHASES = (
    Phase("induction in layer 1", silenced=((2,), (3,)), until_induction_in=((1,),), max_steps=1500),
    Phase("induction again, layer 1 off", silenced=((1,),), until_induction_in=((2, 3),), max_steps=1000),
    Phase(
        "both induction layers needed, documents in",
        silenced=((1,), (2, 3)),
        copy_fraction=0.5,
        until_induction_in=((1,), (2, 3)),
        min_steps=250,
        max_steps=750,
    ),
    Phase("every head, every layer", all_heads=True, copy_fraction=0.5),
)  # the measured curriculum of the "adaptive" recipe (scripts/sweep_language.py records what each run did)
