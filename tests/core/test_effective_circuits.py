"""Effective circuits: the empirical token circuit against a slow loop, its permutation null against a loop, the
averaged MLP Jacobian against autograd; on hand-built models the diagonal shows in the weights only when the route
is direct, and in the effective circuits for either route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gpt2
from route_models import route_model

from ihlib.core.circuits import diagonal_zscore, qkov_zscore_grid
from ihlib.core.effective_circuits import empirical_token_circuits, own_token_wins, permuted_statistics
from ihlib.core.mlp_route import averaged_jacobian_times, mlp_inputs, mlp_route_weights
from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import ParameterError
from ihlib.model.weights import head_weights


def slow_token_circuit(model, layer: int, head: int, ids: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """`Qbar Kbar^T` by a loop over tokens, from the model's own attention module (position 0 left out)."""
    block, n_head = model.transformer.h[layer], model.config.n_head
    captured = []
    handle = block.attn.c_attn.register_forward_hook(lambda m, a, out: captured.append(out.detach()))
    with torch.no_grad():
        model.transformer(ids)
    handle.remove()
    q, k, _ = captured[0].unflatten(-1, (3, n_head, -1)).unbind(2)
    q, k = q[:, 1:, head].double(), k[:, 1:, head].double()
    k = k - k.reshape(-1, k.shape[-1]).mean(0)
    current, previous = ids[:, 1:], ids[:, :-1]
    tokens = [t for t in range(model.config.vocab_size) if (current == t).any() and (previous == t).any()]
    q_bar = torch.stack([q[current == t].mean(0) for t in tokens])
    k_bar = torch.stack([k[previous == t].mean(0) for t in tokens])
    return tokens, q_bar @ k_bar.T


def test_the_token_circuit_matches_a_loop_over_tokens():
    model = random_gpt2(n_layer=2, vocab=23, seed=2)
    ids = repeated_tokens(6, 7, 23, seed=1)
    result = empirical_token_circuits(model, [(1, 2), (0, 3)], ids, n_perm=10, n_corner=50)
    for index, (layer, head) in enumerate([(1, 2), (0, 3)]):
        tokens, M = slow_token_circuit(model, layer, head, ids)
        assert result.tokens.tolist() == tokens
        np.testing.assert_allclose(result.corner[index], M.numpy(), atol=1e-5)
        assert result.z[index] == pytest.approx(float(diagonal_zscore(M)), abs=1e-6)
        assert result.wins[index] == pytest.approx(float(own_token_wins(M)), abs=1e-12)


def test_the_permutation_null_matches_a_loop():
    M = torch.randn(2, 6, 6, dtype=torch.float64)
    permutations = torch.stack([torch.randperm(6) for _ in range(5)])
    z, wins = permuted_statistics(M, permutations)
    for h in range(2):
        for p, perm in enumerate(permutations):
            permuted = M[h][:, perm]
            assert z[h, p] == pytest.approx(float(diagonal_zscore(permuted)), abs=1e-12)
            assert wins[h, p] == pytest.approx(float(own_token_wins(permuted)), abs=1e-12)


def test_the_averaged_jacobian_matches_autograd():
    model = random_gpt2(n_layer=2, seed=1)
    x = mlp_inputs(model, 1, repeated_tokens(3, 5, 97))
    block = model.transformer.h[1]
    jacobians = [torch.autograd.functional.jacobian(lambda v: block.mlp(block.ln_2(v)), row) for row in x]
    maps = torch.randn(32, 8)
    expected = torch.stack(jacobians).mean(0).double() @ maps.double()
    torch.testing.assert_close(averaged_jacobian_times(model, 1, x, maps), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("route", ["direct", "mlp"])
def test_the_empirical_circuit_shows_the_diagonal_whatever_the_route(route):
    model = route_model(route)
    result = empirical_token_circuits(model, [(1, 0)], repeated_tokens(100, 10, 32, seed=0), n_perm=100)
    assert result.z[0] > 3 and result.wins[0] > 0.9
    assert result.z[0] > np.percentile(result.null_z[0], 99) and result.z_percentile()[0] == 100


def test_the_weights_show_the_diagonal_only_on_the_direct_route_and_the_mlp_route_weights_on_theirs():
    ids = repeated_tokens(50, 10, 32, seed=0)
    direct, through = route_model("direct"), route_model("mlp")
    assert qkov_zscore_grid(head_weights(direct), [(1, 0)], [(0, 0)])[0, 0] > 3
    assert abs(qkov_zscore_grid(head_weights(through), [(1, 0)], [(0, 0)])[0, 0]) < 1
    routed = mlp_route_weights(through, head_weights(through), ids, key_route="mlp")
    assert qkov_zscore_grid(routed.W_all, [(1, 0)], [(0, 0)])[0, 0] > 3
    assert routed.feeds[0].all() and not routed.feeds[1].any() and routed.reads[1].all()
    both = mlp_route_weights(direct, head_weights(direct), ids, key_route="both", query_through_mlp=False)
    assert qkov_zscore_grid(both.W_all, [(1, 0)], [(0, 0)])[0, 0] > 3  # MLP0 is zero there: I + 0


def test_the_plain_route_returns_the_weights_and_leaves_the_model_alone():
    model = random_gpt2(n_layer=2, seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    W_all = head_weights(model)
    plain = mlp_route_weights(model, W_all, repeated_tokens(2, 5, 97), key_route="direct", query_through_mlp=False)
    assert torch.equal(plain.W_all, W_all) and not plain.feeds.any() and not plain.reads.any()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ParameterError, match="key_route must be one of"):
        mlp_route_weights(model, W_all, repeated_tokens(2, 5, 97), key_route="key")
