"""Head ablation: hooks against manual weight edits and a hand-computed attention layer; hooks are always removed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import HeadError, IHLibError
from ihlib.report.saving import save_result
from ihlib.tools.ablation import (
    Ablation,
    ablated,
    copying_under_ablations,
    head_output_means,
    single_and_group_ablations,
)

D_HEAD = 8  # small_model: n_embd 32, 4 heads


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    """The LM head's logits `(batch, seq, vocab)` without gradients."""
    with torch.no_grad():
        return model(ids).logits


def logits_with_rows_zeroed(model, heads: list[tuple[int, int]], ids: torch.Tensor) -> torch.Tensor:
    """Logits with `c_proj.weight` rows `h*d_head:(h+1)*d_head` of each head set to 0, restored afterwards."""
    saved = {}
    with torch.no_grad():
        for layer, head in heads:
            weight = model.transformer.h[layer].attn.c_proj.weight
            saved.setdefault(layer, weight.clone())
            weight[head * D_HEAD : (head + 1) * D_HEAD] = 0.0
        try:
            return logits_of(model, ids)
        finally:
            for layer, weight in saved.items():
                model.transformer.h[layer].attn.c_proj.weight.copy_(weight)


def no_hooks_left(model) -> bool:
    """True when no layer's `c_proj` holds a forward pre-hook."""
    return all(not block.attn.c_proj._forward_pre_hooks for block in model.transformer.h)


@pytest.mark.parametrize("heads", [[(1, 2)], [(0, 1), (1, 0), (1, 3)]])
def test_zero_ablation_equals_zeroing_the_heads_c_proj_rows(small_model, heads):
    """Zero-ablating single heads and groups gives the logits of the manual `c_proj` edit (means given or not)."""
    ids = repeated_tokens(3, 5, 97, seed=4)
    means = head_output_means(small_model, repeated_tokens(4, 5, 97, seed=9))
    with ablated(small_model, heads, kind="zero", means=means):
        hooked = logits_of(small_model, ids)
    manual = logits_with_rows_zeroed(small_model, heads, ids)
    torch.testing.assert_close(hooked, manual, atol=1e-5, rtol=1e-5)
    assert (hooked - logits_of(small_model, ids)).abs().max() > 1e-3  # the ablation changed something
    assert no_hooks_left(small_model)


def test_hooks_are_removed_when_the_block_raises(small_model):
    """An exception inside the block propagates, and afterwards the model is intact."""
    ids = repeated_tokens(2, 5, 97, seed=1)
    before = logits_of(small_model, ids)
    with pytest.raises(RuntimeError, match="inside"):
        with ablated(small_model, [(0, 0)]):
            raise RuntimeError("inside")
    assert no_hooks_left(small_model)
    torch.testing.assert_close(logits_of(small_model, ids), before, atol=0, rtol=0)


def manual_layer0_head_outputs(model, ids: torch.Tensor) -> torch.Tensor:
    """Layer 0's per-head attention outputs `(batch, seq, n_head, d_head)`, computed by hand from the weights."""
    body, n_head = model.transformer, model.config.n_head
    with torch.no_grad():
        h = body.wte(ids) + body.wpe(torch.arange(ids.shape[1]))
        q, k, v = body.h[0].attn.c_attn(body.h[0].ln_1(h)).split(model.config.n_embd, dim=-1)
        q, k, v = (t.unflatten(-1, (n_head, -1)).transpose(1, 2) for t in (q, k, v))  # (b, H, T, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        return (pattern @ v).transpose(1, 2)


def test_head_output_means_are_per_position_means_of_the_hand_computed_heads(small_model):
    """Layer 0's recorded means equal the batch mean of a hand-written attention forward, `(seq, n_head, d_head)`."""
    ids = repeated_tokens(6, 4, 97, seed=2)
    means = head_output_means(small_model, ids)
    assert means.shape == (2, 12, 4, D_HEAD)
    torch.testing.assert_close(means[0], manual_layer0_head_outputs(small_model, ids).mean(0), atol=1e-5, rtol=1e-5)


def test_mean_ablation_equals_zeroed_rows_plus_the_mean_written_through_w_o(small_model):
    """Mean ablation = the head's `c_proj` rows zeroed plus `mean[pos] @ W_O(head)` added to the layer's output."""
    ids, reference = repeated_tokens(3, 5, 97, seed=5), repeated_tokens(7, 5, 97, seed=6)
    layer, head = 1, 3
    means = head_output_means(small_model, reference)
    with ablated(small_model, [(layer, head)], kind="mean", means=means):
        hooked = logits_of(small_model, ids)
    c_proj = small_model.transformer.h[layer].attn.c_proj
    added = means[layer, :, head] @ c_proj.weight[head * D_HEAD : (head + 1) * D_HEAD].detach()  # (seq, d_model)
    handle = c_proj.register_forward_hook(lambda module, args, out: out + added)
    try:
        manual = logits_with_rows_zeroed(small_model, [(layer, head)], ids)
    finally:
        handle.remove()
    torch.testing.assert_close(hooked, manual, atol=1e-5, rtol=1e-5)


def test_mean_ablation_with_its_own_sequence_as_reference_changes_nothing(small_model):
    """With one sequence as its own reference, each head's mean is its own output: the logits stay the same."""
    ids = repeated_tokens(1, 5, 97, seed=8)
    means = head_output_means(small_model, ids)
    with ablated(small_model, [(0, 2), (1, 1)], kind="mean", means=means):
        hooked = logits_of(small_model, ids)
    torch.testing.assert_close(hooked, logits_of(small_model, ids), atol=1e-5, rtol=1e-5)


def test_copying_under_ablations_uses_one_forward_pass_per_condition(small_model):
    """The intact condition equals a direct softmax; the body runs once per condition plus once for the means."""
    conditions = single_and_group_ablations([(1, 0), (1, 2)])
    assert [c.name for c in conditions] == [
        "none", "zero L1H0", "zero L1H2", "zero all 2", "mean L1H0", "mean L1H2", "mean all 2"
    ]  # fmt: skip
    calls = []
    handle = small_model.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = copying_under_ablations(small_model, conditions, seg_len=6, rep=3, batch_size=8, n_boot=100)
    finally:
        handle.remove()
    assert len(calls) == len(conditions) + 1
    ids = repeated_tokens(8, 6, 97, rep=3, seed=0)
    positions = copy_positions(6, rep=3, burn_in=2)
    probs = logits_of(small_model, ids).softmax(-1)[:, positions].gather(-1, ids[:, positions + 1, None])[..., 0]
    assert result.prob[0] == pytest.approx(float(probs.mean()), abs=1e-6)
    assert result.per_sequence_error.shape == (7, 8)
    assert np.all(result.error_low <= result.error) and np.all(result.error <= result.error_high)
    assert result.chance_error == pytest.approx(96 / 97)


def test_conditions_accept_heads_as_lists_and_name_themselves():
    """`Ablation([[1, 0], [0, 3]])` stores int tuples and is named after its heads."""
    condition = Ablation([[1, 0], [0, 3]], "mean")
    assert condition.heads == ((1, 0), (0, 3))
    assert condition.name == "mean L1H0+L0H3"
    assert Ablation().name == "none"


def test_bad_ablation_arguments_raise_ihlib_errors(small_model):
    """A head out of range, an unknown kind and a mean ablation without means name what is allowed."""
    with pytest.raises(HeadError, match=r"heads contains layer 2: this model has layers 0\.\.1"):
        with ablated(small_model, [(2, 0)]):
            pass
    with pytest.raises(IHLibError, match="kind must be one of"):
        with ablated(small_model, [(0, 0)], kind="resample"):
            pass
    with pytest.raises(IHLibError, match="means="):
        with ablated(small_model, [(0, 0)], kind="mean"):
            pass
    assert no_hooks_left(small_model)


def test_ablating_the_copy_models_induction_heads_breaks_copying(copy_model):
    """Embedded model: zeroing all 8 layer-1 IHs sends top-1 error from ~0 to near chance; one IH barely matters."""
    layer1 = [(1, h) for h in range(8)]
    conditions = [
        Ablation(),
        Ablation(((1, 0),), "zero"),
        Ablation(tuple(layer1), "zero"),
        Ablation(tuple(layer1), "mean"),
    ]
    result = copying_under_ablations(copy_model, conditions, n_boot=200)
    intact, single, group_zero, group_mean = result.error
    assert intact < 0.02
    assert single < 0.05
    assert group_zero > 0.9 and group_mean > 0.9


def test_ablation_results_save_as_data_that_round_trip(small_model, tmp_path):
    """`save_result` writes every condition's mean and interval to JSON and the per-sequence values to NPZ."""
    conditions = single_and_group_ablations([[1, 0], [1, 1]], kinds=["zero"])
    result = copying_under_ablations(small_model, conditions, seg_len=5, rep=2, batch_size=4, n_boot=50)
    paths = save_result(result, tmp_path)
    record = json.loads(paths["json"].read_text())
    assert [row["name"] for row in record["conditions"]] == result.names
    assert record["conditions"][3]["heads"] == [[1, 0], [1, 1]]
    assert record["conditions"][1]["error"][0] == pytest.approx(result.error[1])
    with np.load(paths["npz"]) as saved:
        np.testing.assert_array_equal(saved["per_sequence_error"], result.per_sequence_error)
