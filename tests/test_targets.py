"""Head kinds per layer follow the absolute bar on each score."""

from __future__ import annotations

import numpy as np

from ihlib.scoring import HeadScores
from ihlib.targets import KIND_BAR, head_table


def scores(induction: list, shifting: list) -> HeadScores:
    return HeadScores(np.asarray(induction, dtype=float), np.asarray(shifting, dtype=float))


def test_heads_are_counted_per_layer_at_the_bar():
    table = head_table(scores([[0.9, KIND_BAR, 0.1], [0.0, 0.2, 0.49]], [[0.0, 0.0, 0.7], [0.8, 0.1, 0.0]]))
    assert table.induction.tolist() == [2, 0]
    assert table.shifting.tolist() == [1, 1]
    assert table.neither.tolist() == [0, 2]
    assert table.n_heads == 6
    assert table.rows()[1] == {"layer": 1, "induction": 0, "shifting": 1, "neither": 2}


def test_a_head_of_both_kinds_is_counted_in_each_and_not_as_neither():
    table = head_table(scores([[0.6, 0.0]], [[0.6, 0.0]]))
    assert table.induction.tolist() == [1] and table.shifting.tolist() == [1] and table.neither.tolist() == [1]
