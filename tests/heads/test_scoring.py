"""Head scores: the vectorised scoring equals the seed's per-head loop; rankings and files are consistent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ihlib.core.copying import pred_probs
from ihlib.heads.scoring import (
    HeadScores,
    attention_patterns,
    head_scores,
    induction_mask,
    scores_by_position,
)
from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import rank_heads
from ihlib.report.saving import save_result, write_rankings


def seed_scores_for_one_sample(attn: np.ndarray, seg_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed notebook's loops (3 repeats, no BOS) for one sample's attention `(L, H, T, T)`."""
    n_layer, n_head, seq, _ = attn.shape
    ind, shift = np.zeros((n_layer, n_head)), np.zeros((n_layer, n_head))
    for layer in range(n_layer):
        for head in range(n_head):
            a = attn[layer, head]
            adj = np.zeros((seq, seq))
            adj[1:, 1:] = a[1:, 1:] / np.sum(a[1:, 1:], axis=1, keepdims=True)
            diag1 = np.diag(adj, -(seg_len - 1))[1:]
            diag2 = np.diag(adj, -(2 * seg_len - 1))[1:]
            ind[layer, head] = np.mean(np.concatenate((diag1[:-seg_len], diag1[-seg_len:] + diag2)))
            shift[layer, head] = np.mean(np.diag(adj, -1)[1:])
    return ind, shift


def test_vectorised_scores_equal_the_seed_loops_averaged_over_samples(small_model):
    seg_len, batch = 7, 4
    scores = head_scores(small_model, batch_size=batch, seg_len=seg_len, rep=3, seed=3)
    ids = repeated_tokens(batch, seg_len, small_model.config.vocab_size, rep=3, seed=3)
    attn = attention_patterns(small_model, ids).double().numpy()  # (L, B, H, T, T)
    per_sample = [seed_scores_for_one_sample(attn[:, b], seg_len) for b in range(batch)]
    np.testing.assert_allclose(scores.induction, np.mean([p[0] for p in per_sample], axis=0), atol=1e-6)
    np.testing.assert_allclose(scores.shifting, np.mean([p[1] for p in per_sample], axis=0), atol=1e-6)


def test_induction_mask_marks_tokens_after_each_earlier_occurrence():
    mask = induction_mask(seg_len=3, rep=3)
    assert mask.sum().item() == 3 + 2 * 3  # segment 2: one target per query; segment 3: two
    assert mask[3, 1] == 1 and mask[8, 6] == 1 and mask[8, 3] == 1 and mask[6, 4] == 1
    assert mask[:3].sum() == 0


def test_induction_mask_with_bos_shifts_every_target_by_one():
    with_bos = induction_mask(3, 3, offset=1)
    assert torch.equal(with_bos[1:, 1:], induction_mask(3, 3))
    assert with_bos[0].sum() == 0 and with_bos[:, 0].sum() == 0


def test_rankings_are_sorted_best_first_as_plain_ints():
    values = np.array([[0.1, 0.9], [0.5, 0.3]])
    assert rank_heads(values) == [[0, 1], [1, 0], [1, 1], [0, 0]]
    assert all(type(x) is int for pair in rank_heads(values) for x in pair)


def test_rankings_files_follow_the_seed_format(tmp_path):
    scores = HeadScores(np.array([[0.2, 0.7]]), np.array([[0.6, 0.1]]))
    paths = write_rankings(scores, tmp_path)
    lines = paths["induction"].read_text().splitlines()
    assert lines[0].startswith("Ranking induction heads")
    assert lines[1] == "Layer 0 Head 1: score 0.7"
    save_result(scores, tmp_path)
    record = json.loads((tmp_path / "head_scores.json").read_text())
    assert record["Shifting_list"] == [[0, 0], [0, 1]] and record["uniform"] == scores.uniform


def test_sequences_longer_than_the_context_are_rejected(small_model):
    with pytest.raises(IHLibError, match="exceeds the model's context of 64"):
        head_scores(small_model, batch_size=2, seg_len=30, rep=3)


def test_copy_model_has_induction_heads_and_earlier_shifting_heads(copy_model):
    scores = head_scores(copy_model)
    strong_ih = [(l, h) for l, h in scores.IH_list if scores.induction[l, h] >= 0.5]
    assert len(strong_ih) >= 3
    first_ih_layer = min(l for l, _ in strong_ih)
    strong_shift = [(l, h) for l, h in scores.Shifting_list if scores.shifting[l, h] >= 0.5 and l < first_ih_layer]
    assert len(strong_shift) >= 2


def test_copy_model_shifting_heads_look_back_one_token_over_the_first_70_positions(copy_model):
    shifting = scores_by_position(copy_model).shifting[:, :, 2:71]  # (L, H, query positions 2..70)
    top3 = head_scores(copy_model).Shifting_list[:3]
    assert all(shifting[l, h].min() >= 0.85 for l, h in top3)


def test_copy_model_copies_120_token_sequences_from_occurrences_before_its_shifting_edge(copy_model):
    ids = repeated_tokens(60, 40, copy_model.config.vocab_size, rep=3, seed=3)
    _, errs = pred_probs(copy_model, ids, np.arange(40, 119))  # queries of the second and third copies
    accuracy = 1 - errs.mean(0)
    assert min(accuracy[i : i + 8].mean() for i in range(0, len(accuracy), 8)) >= 0.8


def test_copy_model_copies_the_second_repeat(copy_model):
    ids = repeated_tokens(100, 25, copy_model.config.vocab_size, rep=2, seed=11)
    _, errs = pred_probs(copy_model, ids, copy_positions(25, rep=2, burn_in=0))
    assert 1 - errs.mean() >= 0.9
