"""Head kinds per layer follow the book's one rule: a share of the best head, and a margin over uniform attention."""

from __future__ import annotations

import numpy as np
import pytest

from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import MARGIN


def scores(induction: list, shifting: list) -> HeadScores:
    return HeadScores(np.asarray(induction, dtype=float), np.asarray(shifting, dtype=float))


def test_heads_are_counted_per_layer_at_half_the_best_score():
    table = head_table(scores([[0.9, 0.45, 0.1], [0.0, 0.2, 0.44]], [[0.0, 0.0, 0.7], [0.8, 0.1, 0.0]]))
    assert table.bars == pytest.approx({"induction": 0.45, "shifting": 0.4})
    assert table.induction.tolist() == [2, 0]
    assert table.shifting.tolist() == [1, 1]
    assert table.neither.tolist() == [0, 2]
    assert table.n_heads == 6
    assert table.role_counts()[1] == {"induction": 0, "shifting": 1, "both": 0, "neither": 2}
    assert table.rows()[1]["induction / shifting heads"] == "L1H0"


def test_weak_heads_near_the_uniform_baseline_count_as_neither():
    weak = scores([[0.05, 0.06], [0.04, 0.05]], [[0.07, 0.06], [0.05, 0.06]])
    table = head_table(weak)
    assert table.bars["shifting"] == pytest.approx(weak.uniform["shifting"] + MARGIN)
    assert table.induction.sum() == 0 and table.shifting.sum() == 0 and table.neither.tolist() == [2, 2]


def test_a_head_of_both_kinds_is_counted_in_each_and_not_as_neither():
    table = head_table(scores([[0.6, 0.0]], [[0.6, 0.0]]))
    assert table.induction.tolist() == [1] and table.shifting.tolist() == [1] and table.neither.tolist() == [1]
