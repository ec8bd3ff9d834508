"""Which kinds of heads an embedded model has, per layer, and whether it meets the targets set for it.

A head is an induction head (IH) when its induction score is at least `KIND_BAR`, a shifting head when its
shifting score is; "neither" when both scores are below `KIND_BAR`. The bar is absolute (a head that puts at
least half of its attention on the right token), so that it means the same on every model; the uniform-attention
baselines of chapter 0's setting (25-token segments, 3 repeats) are about 0.03 (induction) and 0.05 (shifting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.scoring import HeadScores

KIND_BAR = 0.5


@dataclass(frozen=True)
class HeadTable:
    """Per layer: the number of IHs, shifting heads and heads of neither kind, each `(n_layer,)`; heads per layer."""

    induction: np.ndarray
    shifting: np.ndarray
    neither: np.ndarray
    n_head: int

    @property
    def n_heads(self) -> int:
        """Heads in the model."""
        return int(self.neither.size * self.n_head)

    def rows(self) -> list[dict[str, int]]:
        """One row per layer: layer, IHs, shifting heads, neither."""
        return [
            {"layer": l, "induction": int(i), "shifting": int(s), "neither": int(n)}
            for l, (i, s, n) in enumerate(zip(self.induction, self.shifting, self.neither, strict=True))
        ]


def head_table(scores: HeadScores, *, bar: float = KIND_BAR) -> HeadTable:
    """Count, per layer, the heads whose induction or shifting score reaches `bar`, and those where neither does."""
    is_ih, is_shift = scores.induction >= bar, scores.shifting >= bar
    return HeadTable(
        induction=is_ih.sum(axis=1),
        shifting=is_shift.sum(axis=1),
        neither=(~is_ih & ~is_shift).sum(axis=1),
        n_head=int(scores.induction.shape[1]),
    )
