"""Bad input to the analysis functions (issue 10, items 5 and 6): an ihlib error naming the argument, before any work.

They assert behaviour only (an `IHLibError` whose message names the argument) and call public names from `ihlib`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib import (
    IHLibError,
    common_subspace,
    copy_positions,
    exchange_edit,
    head_weights,
    pred_probs,
    qk,
    qkov_matching,
    qkov_zscores,
    repeated_tokens,
    shuffle_exp,
    shuffle_sweep,
)

COPYING = {"seg_len": 8, "vocab_size": 50, "n_exp": 1, "batch_size": 2, "progress": False}


@pytest.fixture(scope="module")
def model():
    """A 2-layer, 4-head random GPT-2 (d_model 32, d_head 8, vocabulary 97, context 64)."""
    return random_gpt2(seed=3)


@pytest.fixture(scope="module")
def W_all(model):
    """`(2, 4, 4, 32, 8)` head weights of `model`."""
    return head_weights(model)


def test_save_dir_that_is_a_file_is_named_before_the_experiment_runs(model, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    with pytest.raises(IHLibError, match="save_dir"):
        shuffle_exp(model, None, heads=[[1, 0], [1, 1]], save_dir=a_file, **COPYING)


def test_save_dir_below_a_file_is_named(W_all, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    with pytest.raises(IHLibError, match="save_dir"):
        qkov_matching(W_all, [[1, 0]], a_file / "sub", [[0, 1]])


@pytest.mark.parametrize("bad", [[1.7, 0.2], ["1", "0"], [True, 0]], ids=["floats", "strings", "bools"])
def test_heads_that_are_not_ints_are_rejected_not_truncated(W_all, bad):
    with pytest.raises(IHLibError, match="IH_list"):
        qkov_zscores(W_all, [bad], [[0, 1]], num_samp=5)


def test_heads_that_are_floats_are_rejected_by_edits(model):
    with pytest.raises(IHLibError, match="heads"):
        with exchange_edit(model, [[1.7, 0.2], [0, 1]], "QK", "shuffle", rng=0):
            pass


def test_duplicate_heads_are_rejected_by_every_function(W_all):
    with pytest.raises(IHLibError, match="IH_list"):
        qkov_zscores(W_all, [[1, 0], [1, 0]], [[0, 1]], num_samp=5)


def test_duplicate_heads_are_rejected_by_the_common_subspace(W_all):
    with pytest.raises(IHLibError, match="heads"):
        common_subspace(W_all, [[1, 0], [1, 0]], rank=2)


def test_duplicate_heads_are_rejected_by_edits(model):
    with pytest.raises(IHLibError, match="heads"):
        with exchange_edit(model, [[1, 0], [1, 0]], "QK", "shuffle", rng=0):
            pass


def test_a_fractional_rank_is_rejected(W_all):
    with pytest.raises(IHLibError, match="rank"):
        common_subspace(W_all, [[1, 0], [1, 1]], rank=2.5)


def test_a_fractional_vocab_size_is_rejected():
    with pytest.raises(IHLibError, match="vocab_size"):
        repeated_tokens(2, 8, 2.7)


def test_a_negative_burn_in_is_rejected():
    with pytest.raises(IHLibError, match="burn_in"):
        copy_positions(8, 3, burn_in=-3)


def test_a_transposed_w_all_is_rejected(W_all):
    with pytest.raises(IHLibError, match="W_all"):
        qk(W_all.transpose(-1, -2), 0, 0)


@pytest.mark.parametrize("corrupt", ["nan", "int"])
def test_w_all_with_nan_or_an_integer_dtype_is_rejected(W_all, corrupt):
    bad = W_all.clone()
    if corrupt == "nan":
        bad[0, 0, 0, 0, 0] = float("nan")
    else:
        bad = (bad * 100).to(torch.int64)
    with pytest.raises(IHLibError, match="W_all"):
        qkov_zscores(bad, [[1, 0]], [[0, 1]], num_samp=5)


def test_an_empty_list_of_ks_is_rejected(model):
    with pytest.raises(IHLibError, match="Ks"):
        shuffle_sweep(model, [[1, 0], [1, 1]], Ks=[], progress=False)


def test_out_of_vocabulary_ids_are_rejected(model):
    ids = torch.full((1, 10), model.config.vocab_size)
    with pytest.raises(IHLibError, match="input_ids"):
        pred_probs(model, ids)


def test_a_sequence_longer_than_the_context_is_rejected(model):
    ids = torch.zeros((1, model.config.n_positions + 8), dtype=torch.long)
    with pytest.raises(IHLibError, match="input_ids"):
        pred_probs(model, ids)


def test_a_zero_chunk_size_is_rejected(model):
    with pytest.raises(IHLibError, match="chunk_size"):
        pred_probs(model, torch.zeros((2, 10), dtype=torch.long), chunk_size=0)


def test_an_out_of_vocabulary_bos_token_is_rejected(model):
    with pytest.raises(IHLibError, match="bos_token_id"):
        shuffle_exp(model, None, heads=[[1, 0], [1, 1]], save_dir=None, bos_token_id=1000, **COPYING)


def test_positions_outside_the_sequence_are_rejected(model):
    with pytest.raises(IHLibError, match="positions"):
        pred_probs(model, torch.zeros((1, 10), dtype=torch.long), positions=np.array([9]))
