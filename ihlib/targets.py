"""Which kinds of heads a model has, per layer, by the book's one rule (`heads.count_threshold`).

A head is an induction head (IH) or a shifting head when its score of that kind reaches
`max(0.5 x the best score of that kind, uniform-attention baseline + 0.1)`, the rule every chapter uses to
choose heads; it is "neither" when it reaches neither bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.heads import count_threshold
from ihlib.scoring import HeadScores


@dataclass(frozen=True)
class HeadTable:
    """Per layer: the number of IHs, shifting heads and heads of neither kind, each `(n_layer,)`; the two bars."""

    induction: np.ndarray
    shifting: np.ndarray
    neither: np.ndarray
    n_head: int
    bars: dict[str, float]

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


def head_table(scores: HeadScores) -> HeadTable:
    """Count, per layer, the heads that count as IHs or shifting heads (`count_threshold`) and those of neither."""
    bars = {kind: count_threshold(scores, kind) for kind in ("induction", "shifting")}
    is_ih, is_shift = scores.induction >= bars["induction"], scores.shifting >= bars["shifting"]
    return HeadTable(
        induction=is_ih.sum(axis=1),
        shifting=is_shift.sum(axis=1),
        neither=(~is_ih & ~is_shift).sum(axis=1),
        n_head=int(scores.induction.shape[1]),
        bars=bars,
    )
