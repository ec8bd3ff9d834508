"""Duplicate-token and first-token scores: masks against an obvious loop, ideal heads, baselines, a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.heads.other_kinds import duplicate_mask, kind_scores_from_attention, other_kind_scores, uniform_kind_scores
from ihlib.model.errors import IHLibError


def test_duplicate_mask_marks_every_earlier_occurrence_of_the_query_token():
    seg_len, rep = 4, 3
    slow = torch.zeros(seg_len * rep, seg_len * rep, dtype=torch.float64)
    for i in range(seg_len, seg_len * rep):
        for k in range(1, i // seg_len + 1):
            if i - k * seg_len >= 1:
                slow[i, i - k * seg_len] = 1.0
    assert torch.equal(duplicate_mask(seg_len, rep), slow)


def ideal_attention(seg_len: int, rep: int, target) -> torch.Tensor:
    """`(T, T)` attention putting all weight of query i on key `target(i)` (clipped to the causal range)."""
    t = seg_len * rep
    attn = torch.zeros(t, t, dtype=torch.float64)
    for i in range(t):
        attn[i, min(i, max(0, target(i)))] = 1.0
    return attn


def test_an_ideal_duplicate_token_head_scores_1_and_an_induction_head_0():
    seg_len, rep = 5, 3
    duplicate = kind_scores_from_attention(ideal_attention(seg_len, rep, lambda i: i - seg_len), seg_len, rep)
    induction = kind_scores_from_attention(ideal_attention(seg_len, rep, lambda i: i - seg_len + 1), seg_len, rep)
    assert duplicate["duplicate"] == pytest.approx(1.0) and induction["duplicate"] == pytest.approx(0.0)


def test_a_head_on_the_first_token_scores_1_there_and_the_uniform_head_its_mean_share():
    seg_len, rep = 5, 3
    sink = kind_scores_from_attention(ideal_attention(seg_len, rep, lambda i: 0), seg_len, rep)
    assert sink["first_token"] == pytest.approx(1.0)
    t = seg_len * rep
    assert uniform_kind_scores(seg_len, rep)["first_token"] == pytest.approx(
        np.mean([1 / (i + 1) for i in range(1, t)])
    )
    earlier = {i: (i - 1) // seg_len for i in range(seg_len, t)}  # occurrences among the i keys 1..i
    slow_duplicate = np.mean([n / i for i, n in earlier.items() if n > 0])
    assert uniform_kind_scores(seg_len, rep)["duplicate"] == pytest.approx(slow_duplicate)


def test_other_kind_scores_on_the_copy_model_are_attention_shares_with_a_bar_above_the_baseline(copy_model):
    scores = other_kind_scores(copy_model, batch_size=8)
    n_layer, n_head = copy_model.config.n_layer, copy_model.config.n_head
    assert scores.duplicate.shape == scores.first_token.shape == (n_layer, n_head)
    assert ((scores.duplicate >= 0) & (scores.duplicate <= 1) & (scores.first_token <= 1)).all()
    table = scores.table()
    assert list(table["kind"]) == ["duplicate-token head", "first-token head"]
    assert all(scores.bar(kind) >= scores.uniform[kind] + 0.1 for kind in ("duplicate", "first_token"))
    with pytest.raises(IHLibError, match="context"):
        other_kind_scores(copy_model, batch_size=2, seg_len=100, rep=2)
