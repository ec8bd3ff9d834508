"""Path patching: against a slow loop over heads written from the weights, against mean ablation everywhere, on
hand-built models whose route is known; the unedited forward is the model's own; hooks go and weights stay."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_gpt2
from route_models import route_model

from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import HeadError, ParameterError
from ihlib.report.saving import save_result
from ihlib.tools.ablation import ablated, head_output_means
from ihlib.tools.path_patching import PathCondition, Readers, Route, patched_forward
from ihlib.tools.routes import PatchSettings, path_patching


def own_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The model's final residual after `ln_f` `(batch, seq, d_model)`."""
    with torch.no_grad():
        return model.transformer(ids).last_hidden_state


def every_reader_after(model, layer: int, *, same_layer_mlp: bool = True) -> Readers:
    """Every head (q, k, v) of the layers after `layer`, every MLP from `layer` on, and the unembedding."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    heads = tuple((l, h) for l in range(layer + 1, n_layer) for h in range(n_head))
    mlps = tuple(range(layer if same_layer_mlp else layer + 1, n_layer))
    return Readers(heads=heads, inputs=("q", "k", "v"), mlps=mlps, unembedding=True)


def slow_forward(model, ids: torch.Tensor, key_edits: dict | None = None) -> tuple[torch.Tensor, list, list, list]:
    """A GPT-2 forward written out head by head from the weights: final residual, attention `[(batch, H, T, T)]`
    per layer, head writes `[(batch, T, H, d_model)]` and MLP inputs `x_pre` per layer.

    `key_edits[(layer, head)] (batch, T, d_model)` is added to the residual that head's key alone reads.
    """
    key_edits = key_edits or {}
    body, config = model.transformer, model.config
    n_head, d = config.n_head, config.n_embd
    d_head = d // n_head
    seq = ids.shape[1]
    x = body.wte.weight[ids] + body.wpe.weight[:seq]
    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    attentions, writes, mlp_inputs = [], [], []
    with torch.no_grad():
        for layer, block in enumerate(body.h):
            w, b = block.attn.c_attn.weight, block.attn.c_attn.bias
            layer_writes, patterns = [], []
            for head in range(n_head):
                cols = [part * d + head * d_head + torch.arange(d_head) for part in range(3)]
                y = block.ln_1(x)
                q, v = y @ w[:, cols[0]] + b[cols[0]], y @ w[:, cols[2]] + b[cols[2]]
                y_key = block.ln_1(x + key_edits.get((layer, head), 0.0))
                k = y_key @ w[:, cols[1]] + b[cols[1]]
                scores = (q @ k.mT / d_head**0.5).masked_fill(~causal, float("-inf"))
                pattern = scores.softmax(-1)
                rows = block.attn.c_proj.weight[head * d_head : (head + 1) * d_head]
                layer_writes.append(pattern @ v @ rows)
                patterns.append(pattern)
            writes.append(torch.stack(layer_writes, dim=2))
            attentions.append(torch.stack(patterns, dim=1))
            x = x + writes[-1].sum(2) + block.attn.c_proj.bias
            mlp_inputs.append(x)
            x = x + block.mlp(block.ln_2(x))
        return body.ln_f(x), attentions, writes, mlp_inputs


@pytest.fixture(scope="module")
def three_layers():
    """A 3-layer, 4-head random GPT-2 with non-zero biases and attention weights x10, so that attention is not flat."""
    model = random_gpt2(n_layer=3, seed=3)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(10.0)
    return model


def test_the_slow_forward_is_the_models_forward(three_layers):
    ids = repeated_tokens(3, 6, 97, seed=2)
    torch.testing.assert_close(slow_forward(three_layers, ids)[0], own_hidden(three_layers, ids), atol=1e-5, rtol=0)


def test_with_no_route_removed_every_reader_reads_the_models_own_forward(three_layers):
    ids = repeated_tokens(4, 6, 97, seed=1)
    run = patched_forward(three_layers, ids, (), every_reader_after(three_layers, 0))
    torch.testing.assert_close(run.hidden, own_hidden(three_layers, ids), atol=1e-5, rtol=0)


def test_a_mean_ablation_over_a_batch_of_one_edits_nothing(three_layers):
    """On one sequence each route's batch mean is the route itself: the hooked recomputation changes nothing."""
    ids = repeated_tokens(1, 6, 97, seed=5)
    routes = (Route.head_write(0, 1), Route.mlp_output(0), Route.mlp_part(1, [(0, 2), (1, 0)]))
    run = patched_forward(three_layers, ids, routes, every_reader_after(three_layers, 0))
    torch.testing.assert_close(run.hidden, own_hidden(three_layers, ids), atol=1e-5, rtol=0)
    assert (run.hidden - patched_forward(three_layers, ids, routes, kind="zero").hidden).abs().max() < 1e-6


@pytest.mark.parametrize("sender", [(0, 2), (1, 3)])
@pytest.mark.parametrize("kind", ["mean", "zero"])
def test_removing_a_write_from_every_later_reader_is_ablating_the_head(three_layers, sender, kind):
    """Every later head's q, k and v, every MLP from the sender's layer on and the unembedding: `ablation.ablated`."""
    ids = repeated_tokens(5, 7, 97, seed=8)
    readers = every_reader_after(three_layers, sender[0])
    run = patched_forward(three_layers, ids, (Route.head_write(*sender),), readers, kind=kind)
    with ablated(three_layers, [sender], kind=kind, means=head_output_means(three_layers, ids)):
        expected = own_hidden(three_layers, ids)
    torch.testing.assert_close(run.hidden, expected, atol=1e-5, rtol=0)
    assert (run.hidden - own_hidden(three_layers, ids)).abs().max() > 1e-3  # the removal mattered


@pytest.mark.parametrize("kind", ["mean", "zero"])
def test_a_head_write_removed_from_keys_matches_the_slow_loop(three_layers, kind):
    ids = repeated_tokens(6, 5, 97, seed=3)
    _, _, writes, _ = slow_forward(three_layers, ids)
    c = writes[0][:, :, 1]  # L0H1's write (batch, T, d_model)
    edit = (c.mean(0) - c) if kind == "mean" else -c
    receivers = [(1, 0), (2, 3)]
    expected_hidden, expected_attention, _, _ = slow_forward(three_layers, ids, {pair: edit for pair in receivers})
    run = patched_forward(three_layers, ids, (Route.head_write(0, 1),), Readers(heads=tuple(receivers)), kind=kind)
    torch.testing.assert_close(run.hidden, expected_hidden, atol=1e-5, rtol=0)
    for layer in range(3):
        torch.testing.assert_close(run.attention[layer], expected_attention[layer], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mean", "zero"])
def test_an_mlp_part_removed_from_keys_matches_the_slow_loop(three_layers, kind):
    """`m_0(x_pre) - m_0(x_pre - sum_S c_h + sum_S mean c_h)` leaves the keys of L1H2 only."""
    ids = repeated_tokens(6, 5, 97, seed=4)
    _, _, writes, mlp_inputs = slow_forward(three_layers, ids)
    mlp = three_layers.transformer.h[0]
    with torch.no_grad():
        c = writes[0][:, :, [0, 3]].sum(2)
        shifted = mlp_inputs[0] - (c - c.mean(0) if kind == "mean" else c)
        edit = mlp.mlp(mlp.ln_2(shifted)) - mlp.mlp(mlp.ln_2(mlp_inputs[0]))
    expected_hidden, expected_attention, _, _ = slow_forward(three_layers, ids, {(1, 2): edit})
    route = Route.mlp_part(0, [(0, 0), (0, 3)])
    run = patched_forward(three_layers, ids, (route,), Readers(heads=((1, 2),)), kind=kind)
    torch.testing.assert_close(run.hidden, expected_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(run.attention[1], expected_attention[1], atol=1e-5, rtol=0)
    assert (run.attention[1][:, 2] - own_attention(three_layers, ids)[1][:, 2]).abs().max() > 1e-3


def own_attention(model, ids: torch.Tensor) -> tuple:
    """The model's own attention per layer `(batch, H, T, T)`."""
    with torch.no_grad():
        return model.transformer(ids, output_attentions=True).attentions


def test_an_mlp_output_removed_from_queries_and_values_matches_the_slow_loop(three_layers):
    """Only the listed inputs change: removing MLP0 from L2H1's queries leaves its keys and values alone."""
    ids = repeated_tokens(4, 5, 97, seed=6)
    run = patched_forward(three_layers, ids, (Route.mlp_output(0),), Readers(heads=((2, 1),), inputs=("k",)))
    _, _, _, mlp_inputs = slow_forward(three_layers, ids)
    block = three_layers.transformer.h[0]
    with torch.no_grad():
        m = block.mlp(block.ln_2(mlp_inputs[0]))
    expected_hidden, _, _, _ = slow_forward(three_layers, ids, {(2, 1): m.mean(0) - m})
    torch.testing.assert_close(run.hidden, expected_hidden, atol=1e-5, rtol=0)
    queries = patched_forward(three_layers, ids, (Route.mlp_output(0),), Readers(heads=((2, 1),), inputs=("q",)))
    assert (queries.hidden - run.hidden).abs().max() > 1e-4


@pytest.mark.parametrize("route", ["direct", "mlp"])
def test_the_known_route_carries_induction_and_the_other_does_not(route):
    """Hand-built models: removing the route the model uses from the IH's keys drops its induction score to about
    the uniform head's and breaks copying; removing the other route changes nothing."""
    model = route_model(route)
    direct, through_mlp = (Route.head_write(0, 0),), (Route.mlp_part(0, [(0, 0)]),)
    conditions = [PathCondition(direct, "direct"), PathCondition(through_mlp, "mlp")]
    result = path_patching(model, conditions, [(1, 0)], settings=PatchSettings(seg_len=10, burn_in=2))
    clean, without_direct, without_mlp = result.induction[:, 0].mean(-1)
    used, unused = (without_direct, without_mlp) if route == "direct" else (without_mlp, without_direct)
    assert clean > 0.8
    assert used < result.uniform_induction + 0.05
    assert abs(unused - clean) < 0.01
    errors = result.error.mean(-1)
    assert errors[1 if route == "direct" else 2] > 0.8 > 0.2 > errors[0]


def test_a_run_costs_one_forward_per_condition_and_saves(tmp_path, three_layers):
    conditions = [PathCondition((Route.head_write(0, 0),)), PathCondition((Route.mlp_output(1),), "MLP1 alone")]
    settings = PatchSettings(seg_len=6, batch_size=8, burn_in=1)
    result = path_patching(three_layers, conditions, [(2, 0), (1, 1)], settings=settings)
    assert result.forwards == 3 and result.names == ["nothing", "L0H0", "MLP1 alone"]
    assert result.induction.shape == (3, 2, 8) and result.error.shape == (3, 8)
    # MLP1 reaches layer 2 only: L1H1's scores are those of the unedited model
    np.testing.assert_allclose(result.induction[2, 1], result.induction[0, 1], atol=1e-6)
    interval = result.induction_interval(1, 0)
    assert interval.low <= interval.mean <= interval.high
    save_result(result, tmp_path)
    record = json.loads((tmp_path / "path_patching.json").read_text())
    assert record["forwards"] == 3 and set(record["conditions"][1]["induction"]) == {"L2H0", "L1H1"}


def hook_counts(model) -> list[tuple[int, int]]:
    """Forward hooks and pre-hooks per module (transformers keeps hooks of its own: compare, do not expect none)."""
    return [(len(module._forward_hooks), len(module._forward_pre_hooks)) for module in model.modules()]


def test_hooks_go_and_weights_stay_also_on_error(three_layers):
    before = {k: v.clone() for k, v in three_layers.state_dict().items()}
    hooks = hook_counts(three_layers)
    ids = repeated_tokens(2, 5, 97, seed=1)
    with pytest.raises(IndexError):
        patched_forward(three_layers, ids + 10_000, (Route.head_write(0, 0),), Readers(heads=((1, 0),)))
    patched_forward(three_layers, ids, (Route.mlp_part(1, [(1, 1)]),), every_reader_after(three_layers, 1))
    assert hook_counts(three_layers) == hooks
    assert all(torch.equal(before[k], v) for k, v in three_layers.state_dict().items())


@pytest.mark.parametrize(
    ("route", "readers", "error", "match"),
    [
        (Route.head_write(3, 0), Readers(heads=((1, 0),)), ParameterError, "layer of route"),
        (Route.mlp_part(0, [(1, 0)]), Readers(heads=((1, 0),)), HeadError, "must lie in layers 0..0"),
        (Route.mlp_part(0, []), Readers(heads=((1, 0),)), ParameterError, "name the heads"),
        (Route.head_write(0, 0), Readers(heads=((1, 0),), inputs=("key",)), ParameterError, "inputs must be"),
        (Route.head_write(0, 0), Readers(heads=((1, 9),)), HeadError, "outside the model"),
    ],
)
def test_bad_routes_and_readers_say_what_to_change(three_layers, route, readers, error, match):
    with pytest.raises(error, match=match):
        patched_forward(three_layers, repeated_tokens(2, 5, 97), (route,), readers)


def test_a_bare_gpt2_model_gives_what_its_lm_head_model_gives(three_layers):
    """`GPT2Model` (tied `wte` unembedding) and `GPT2LMHeadModel` share the patched forward and the measures."""
    conditions = [PathCondition((Route.mlp_part(0, [(0, 1)]),))]
    settings = PatchSettings(seg_len=6, batch_size=6, burn_in=1)
    with_head = path_patching(three_layers, conditions, [(1, 0)], settings=settings)
    bare = path_patching(three_layers.transformer, conditions, [(1, 0)], settings=settings)
    np.testing.assert_allclose(bare.induction, with_head.induction, atol=1e-6)
    np.testing.assert_allclose(bare.error, with_head.error)
