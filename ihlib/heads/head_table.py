"""Which kinds of heads a model has, per layer, by the book's one rule (`selection.count_threshold`): the one place
where heads are counted (training targets, the model facts and the across-models page all read it).

A head's induction (shifting) score counts when it reaches `max(fraction x the best score of that kind,
uniform-attention baseline + margin)`. Its role is "induction head" or "shifting head" when one of its scores
counts, "both" when both do, "neither" when none does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import FRACTION, MARGIN, count_threshold
from ihlib.model.head_ids import HEAD_KINDS, head_label

ROLES = ("induction head", "shifting head", "both", "neither")
ROLE_KEYS = {"induction head": "induction", "shifting head": "shifting", "both": "both", "neither": "neither"}


@dataclass(frozen=True)
class HeadTable:
    """Per head, whether each kind's score counts (`(n_layer, n_head)` bool arrays), and the two bars."""

    is_induction: np.ndarray
    is_shifting: np.ndarray
    bars: dict[str, float]

    @property
    def n_head(self) -> int:
        """Heads per layer."""
        return int(self.is_induction.shape[1])

    @property
    def n_heads(self) -> int:
        """Heads in the model."""
        return int(self.is_induction.size)

    @property
    def induction(self) -> np.ndarray:
        """Per layer `(n_layer,)`: heads whose induction score counts (heads of both kinds included)."""
        return self.is_induction.sum(axis=1)

    @property
    def shifting(self) -> np.ndarray:
        """Per layer `(n_layer,)`: heads whose shifting score counts (heads of both kinds included)."""
        return self.is_shifting.sum(axis=1)

    @property
    def neither(self) -> np.ndarray:
        """Per layer `(n_layer,)`: heads of neither kind."""
        return (~self.is_induction & ~self.is_shifting).sum(axis=1)

    def roles(self) -> np.ndarray:
        """Each head's role `(n_layer, n_head)`: one of `ROLES`."""
        both = self.is_induction & self.is_shifting
        return np.select(
            [both, self.is_induction, self.is_shifting],
            ["both", "induction head", "shifting head"],
            default="neither",
        )

    def role_counts(self) -> list[dict[str, int]]:
        """Per layer, heads of each role (exclusive): `{"induction", "shifting", "both", "neither"}`, n_head in all."""
        roles = self.roles()
        return [{ROLE_KEYS[role]: int((row == role).sum()) for role in ROLES} for row in roles]

    def rows(self) -> list[dict[str, object]]:
        """One row per layer: layer, the count of each role, and the heads of some kind listed."""
        roles = self.roles()
        return [
            {
                "layer": layer,
                **{role: int((roles[layer] == role).sum()) for role in ROLES},
                "induction / shifting heads": ", ".join(
                    head_label(layer, head) for head in range(self.n_head) if roles[layer, head] != "neither"
                ),
            }
            for layer in range(roles.shape[0])
        ]


def head_table(scores: HeadScores, *, fraction: float = FRACTION, margin: float = MARGIN) -> HeadTable:
    """Decide, per head, whether its induction and shifting scores count (`count_threshold` of each kind)."""
    bars = {kind: count_threshold(scores, kind, fraction=fraction, margin=margin) for kind in HEAD_KINDS}
    return HeadTable(
        is_induction=scores.induction >= bars["induction"],
        is_shifting=scores.shifting >= bars["shifting"],
        bars=bars,
    )
