"""Reversible edits: bitwise restore on both exit paths, the right slices moved, edited model = a slow copy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib.core.edits import exchange_edit, exchange_pairs, projection_edit
from ihlib.model.errors import EditError, IHLibError
from ihlib.model.loading import transformer_of
from ihlib.model.weights import K, O, Q, V, head_biases, head_weights

HEADS = [[0, 1], [1, 0], [1, 3], [2, 2]]


@pytest.fixture(scope="module")
def model():
    """A 3-layer, 4-head random GPT-2 with non-zero biases."""
    return random_gpt2(n_layer=3, n_head=4, seed=5)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return clones of every parameter."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_bitwise_equal(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Assert every parameter equals its snapshot bit for bit."""
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def slow_exchange(model: torch.nn.Module, pairs: list, component: str) -> torch.nn.Module:
    """Return a deep copy with each target's component overwritten by its source's, slice by slice (the obvious way)."""
    edited = copy.deepcopy(model)
    d = model.config.n_embd
    dh = d // model.config.n_head
    parts = (0, 1) if component == "QK" else (2,)
    for (lt, ht), (ls, hs) in pairs:
        src, dst = model.transformer.h[ls].attn, edited.transformer.h[lt].attn
        for part in parts:
            for j in range(dh):
                dst.c_attn.weight.data[:, part * d + ht * dh + j] = src.c_attn.weight.data[:, part * d + hs * dh + j]
                dst.c_attn.bias.data[part * d + ht * dh + j] = src.c_attn.bias.data[part * d + hs * dh + j]
        if component == "OV":
            for j in range(dh):
                dst.c_proj.weight.data[ht * dh + j] = src.c_proj.weight.data[hs * dh + j]
    return edited


@pytest.mark.parametrize("component", ["QK", "OV"])
@pytest.mark.parametrize("kind", ["shuffle", "random baseline"])
def test_exchange_restores_every_parameter_bitwise_on_normal_exit(model, component, kind):
    before = snapshot(model)
    with exchange_edit(model, HEADS, component, kind, rng=1):
        changed = sum(not torch.equal(p, before[n]) for n, p in model.named_parameters())
        assert changed >= 2
    assert_bitwise_equal(model, before)


@pytest.mark.parametrize("component", ["QK", "OV"])
def test_exchange_restores_every_parameter_bitwise_when_an_exception_escapes(model, component):
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with exchange_edit(model, HEADS, component, "shuffle", rng=2):
            raise RuntimeError("boom")
    assert_bitwise_equal(model, before)


@pytest.mark.parametrize("component", ["QK", "OV"])
@pytest.mark.parametrize("kind", ["shuffle", "random baseline"])
def test_edited_model_equals_a_slow_sliced_deep_copy(model, component, kind):
    ids = torch.randint(0, model.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(0))
    with exchange_edit(model, HEADS, component, kind, rng=3) as pairs:
        with torch.no_grad():
            fast = model(ids).logits
    reference = slow_exchange(model, pairs, component)
    with torch.no_grad():
        slow = reference(ids).logits
    assert torch.equal(fast, slow)
    with torch.no_grad():
        assert (model(ids).logits - slow).abs().max() > 1e-6  # restored, and the edit did change the output


def test_shuffle_moves_qk_and_biases_between_the_heads_only(model):
    W, (b_qkv, b_out) = head_weights(model), head_biases(model)
    with exchange_edit(model, HEADS, "QK", "shuffle", rng=4) as pairs:
        W_e, (b_qkv_e, b_out_e) = head_weights(model), head_biases(model)
    assert sorted(s for _, s in pairs) == sorted(HEADS)
    assert all(t != s for t, s in pairs)
    for (lt, ht), (ls, hs) in pairs:
        assert torch.equal(W_e[lt, ht, [Q, K]], W[ls, hs, [Q, K]])
        assert torch.equal(W_e[lt, ht, [V, O]], W[lt, ht, [V, O]])
        assert torch.equal(b_qkv_e[lt, ht, :2], b_qkv[ls, hs, :2])
        assert torch.equal(b_qkv_e[lt, ht, 2], b_qkv[lt, ht, 2])
    untouched = [[l, h] for l in range(3) for h in range(4) if [l, h] not in HEADS]
    for l, h in untouched:
        assert torch.equal(W_e[l, h], W[l, h])
    assert torch.equal(b_out_e, b_out)


def test_random_baseline_copies_ov_from_distinct_heads_outside_the_set(model):
    W, (b_qkv, _) = head_weights(model), head_biases(model)
    with exchange_edit(model, HEADS, "OV", "random baseline", rng=5) as pairs:
        W_e, (b_qkv_e, _) = head_weights(model), head_biases(model)
    sources = [s for _, s in pairs]
    assert len({tuple(s) for s in sources}) == len(HEADS)
    assert not any(s in HEADS for s in sources)
    for (lt, ht), (ls, hs) in pairs:
        assert torch.equal(W_e[lt, ht, [V, O]], W[ls, hs, [V, O]])
        assert torch.equal(W_e[lt, ht, [Q, K]], W[lt, ht, [Q, K]])
        assert torch.equal(b_qkv_e[lt, ht, 2], b_qkv[ls, hs, 2])
        assert torch.equal(W_e[ls, hs], W[ls, hs])


def test_shuffle_is_a_derangement_and_uniform_over_derangements_of_three(model):
    rng = np.random.default_rng(0)
    heads = HEADS[:3]
    counts: dict[tuple, int] = {}
    for _ in range(600):
        pairs = exchange_pairs(model, heads, "shuffle", rng)
        key = tuple(heads.index(s) for _, s in pairs)
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(1, 2, 0), (2, 0, 1)}
    assert abs(counts[(1, 2, 0)] - 300) < 60


def test_random_baseline_draws_only_from_the_given_pool(model):
    pool = [[1, 1], [1, 2], [2, 0], [2, 1], [0, 1]]
    for seed in range(20):
        pairs = exchange_pairs(model, HEADS[:2], "random baseline", seed, pool)
        assert all(s in pool and s not in HEADS[:2] for _, s in pairs)


def test_random_baseline_draws_with_replacement_and_warns_when_the_pool_is_small(model):
    with pytest.warns(UserWarning, match="Only 2 heads lie outside the 4 edited ones"):
        pairs = exchange_pairs(model, HEADS, "random baseline", 0, [*HEADS, [0, 0], [2, 3]])
    assert all(s in [[0, 0], [2, 3]] for _, s in pairs) and len(pairs) == 4


@pytest.mark.parametrize("component", ["QK", "OV"])
def test_projection_applies_p_to_w_k_or_w_o_in_column_convention(model, component):
    d = model.config.n_embd
    P = torch.randn(d, d, generator=torch.Generator().manual_seed(1))  # not symmetric: catches a transpose
    W, (b_qkv, b_out) = head_weights(model), head_biases(model)
    with projection_edit(model, HEADS, P, component):
        W_e, (b_qkv_e, b_out_e) = head_weights(model), head_biases(model)
    index = K if component == "QK" else O
    for l, h in HEADS:
        torch.testing.assert_close(W_e[l, h, index], P @ W[l, h, index], rtol=1e-5, atol=1e-5)
        others = [i for i in (Q, K, V, O) if i != index]
        assert torch.equal(W_e[l, h, others], W[l, h, others])
    assert torch.equal(b_qkv_e, b_qkv) and torch.equal(b_out_e, b_out)


def test_projecting_all_of_w_k_out_makes_attention_uniform_over_the_prefix(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))
    P = torch.zeros(model.config.n_embd, model.config.n_embd)
    with projection_edit(model, [[1, 2]], P, "QK"):
        with torch.no_grad():
            attn = model(ids, output_attentions=True).attentions[1][:, 2]  # (batch, T, T)
    uniform = torch.tril(torch.ones(12, 12)) / torch.arange(1, 13).unsqueeze(1)
    torch.testing.assert_close(attn, uniform.expand_as(attn), rtol=1e-5, atol=1e-6)


def test_projection_restores_bitwise_when_an_exception_escapes(model):
    before = snapshot(model)
    P = torch.eye(model.config.n_embd) * 0.5
    with pytest.raises(KeyError):
        with projection_edit(model, HEADS, P, "OV"):
            raise KeyError("inside")
    assert_bitwise_equal(model, before)


def test_edits_work_on_the_gpt2model_body(model):
    body = transformer_of(model)
    before = snapshot(body)
    with exchange_edit(body, HEADS, "OV", "shuffle", rng=0):
        assert not torch.equal(body.h[0].attn.c_proj.weight, before["h.0.attn.c_proj.weight"])
    assert_bitwise_equal(body, before)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: exchange_pairs(m, [[0, 0]], "shuffle"), "at least 2"),
        (lambda m: exchange_pairs(m, [[0, 0], [0, 0]], "shuffle"), "twice"),
        (lambda m: exchange_pairs(m, [[3, 0], [0, 0]], "shuffle"), "this model has layers 0..2"),
        (lambda m: exchange_pairs(m, [[0, 4], [0, 0]], "shuffle"), "this model has heads 0..3"),
        (lambda m: exchange_pairs(m, HEADS, "swap"), "kind must be one of"),
        (lambda m: exchange_pairs(m, HEADS, "random baseline", 0, [[0, 1], [1, 0]]), "the pool has none"),
        (lambda m: exchange_edit(m, HEADS, "VO").__enter__(), "component must be one of"),
        (lambda m: projection_edit(m, HEADS, torch.eye(3)).__enter__(), r"P must have shape \(32, 32\)"),
    ],
)
def test_bad_input_raises_an_ihlib_error_naming_the_allowed_range(model, call, message):
    with pytest.raises(IHLibError, match=message):
        call(model)


def test_exiting_nested_edits_out_of_order_raises_and_restores_every_parameter(model):
    before = snapshot(model)
    outer = exchange_edit(model, HEADS, "QK", "shuffle", rng=6)
    inner = projection_edit(model, HEADS[:2], torch.eye(model.config.n_embd) * 0.5, "QK")
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(EditError, match=r"exited before the edits entered after it \(1 still active\).*undone too"):
        outer.__exit__(None, None, None)
    assert_bitwise_equal(model, before)
    inner.__exit__(None, None, None)
    assert_bitwise_equal(model, before)


def test_nested_edits_exited_in_order_still_compose_and_restore(model):
    before = snapshot(model)
    with exchange_edit(model, HEADS, "OV", "shuffle", rng=7):
        with projection_edit(model, HEADS, torch.zeros(model.config.n_embd, model.config.n_embd), "QK"):
            assert not torch.equal(
                model.transformer.h[0].attn.c_attn.weight, before["transformer.h.0.attn.c_attn.weight"]
            )
    assert_bitwise_equal(model, before)


def test_changing_the_dtype_inside_an_edit_raises_and_restores_the_original_values():
    model = random_gpt2(n_layer=3, n_head=4, seed=8)
    before = snapshot(model)
    with pytest.raises(EditError, match=r"dtype or device.*float32 on cpu.*float64 on cpu"):
        with exchange_edit(model, HEADS, "QK", "shuffle", rng=8):
            model.to(torch.float64)
    model.to(torch.float32)
    assert_bitwise_equal(model, before)


def test_moving_the_model_inside_an_edit_raises_naming_the_device():
    model = random_gpt2(n_layer=3, n_head=4, seed=9)
    with pytest.raises(EditError, match=r"float32 on cpu.*float32 on meta"):
        with projection_edit(model, HEADS, torch.eye(model.config.n_embd), "OV"):
            model.to("meta")
