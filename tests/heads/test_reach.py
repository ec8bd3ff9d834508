"""The reach of shifting heads: the first unbroken run of previous-token attention, and the sentences about it."""

from __future__ import annotations

import numpy as np
from conftest import random_gpt2

from ihlib.core.copying import CopyingSettings
from ihlib.heads import reach
from ihlib.heads.reach import LookBack
from ihlib.heads.scoring import attention_patterns
from ihlib.model.batches import repeated_tokens
from ihlib.report.reach_sentences import copying_reach_paragraph


def reach_of(previous: list[float]) -> LookBack:
    """One head with the given previous-token attention per query position (position 0 undefined)."""
    return LookBack([[0, 0]], np.array([[np.nan, *previous]]), seg_len=4, rep=3, batch_size=1)


def test_reach_is_the_end_of_the_first_run_and_later_returns_are_listed():
    result = reach_of([0.9, 0.8, 0.7, 0.2, 0.1, 0.9, 0.95, 0.3])
    assert result.reach(0) == 3 and result.returns(0) == [6, 7]
    assert reach_of([0.9] * 8).reach(0) == 8 and reach_of([0.1, 0.9]).reach(0) == 0
    two = LookBack([[0, 0], [0, 1]], np.array([[np.nan, 0.9, 0.9, 0.1], [np.nan, 0.9, 0.1, 0.1]]), 2, 2, 1)
    assert two.farthest == ([0, 0], 2) and two.common_reach == 1


def test_the_copying_sentence_says_which_positions_lie_beyond_the_reach():
    settings = CopyingSettings(seg_len=20, rep=3, batch_size=2, n_exp=2, vocab_size=50)
    result = LookBack([[0, 0]], np.array([[np.nan] + [0.9] * 49 + [0.1] * 76]), seg_len=42, rep=3, batch_size=1)
    text = copying_reach_paragraph(result, settings, "m").text
    beyond = int((settings.positions() > 49).sum())
    assert "up to query position 49" in text and "60-token sequences" in text
    assert f"{beyond} of its {settings.positions().size} query positions" in text and "up to 39, within" in text


def test_look_back_a_few_sequences_per_forward_equals_one_forward_over_the_whole_batch(monkeypatch):
    """Chunked by the memory bound (one sequence per forward here), the mean previous-token attention is the same."""
    model = random_gpt2(n_layer=2, n_head=4, n_pos=48)
    heads = [[0, 1], [1, 3]]
    ids = repeated_tokens(5, 16, model.config.vocab_size, 3, 0)
    attn = attention_patterns(model, ids)
    expected = [
        attn[layer, :, head].diagonal(offset=-1, dim1=-2, dim2=-1).mean(0).double().numpy() for layer, head in heads
    ]
    monkeypatch.setattr(reach, "ATTENTION_BYTES", 1)
    result = reach.look_back(model, heads, batch_size=5, rep=3, seed=0)
    assert np.isnan(result.previous[:, 0]).all()
    np.testing.assert_allclose(result.previous[:, 1:], np.stack(expected), rtol=1e-6, atol=1e-7)
