"""OV copying scores: the factored, batched path against the dense `(vocab, vocab)` circuit of each head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.loading import transformer_of, unembedding
from ihlib.model.weights import head_weights, ov
from ihlib.tools.ov_copying import (
    OVParts,
    eigenvalue_copying_score,
    ov_circuit_block,
    ov_copying_scores,
)


def dense_circuit(model, layer: int, head: int) -> torch.Tensor:
    """The full OV circuit `W_U W_OV W_E^T`, `(vocab, vocab)`, formed densely in float64."""
    W_all = head_weights(model).double()
    w_e = transformer_of(model).wte.weight.detach().double()
    return unembedding(model).detach().double() @ ov(W_all, layer, head) @ w_e.T


def dense_scores(model) -> tuple[np.ndarray, np.ndarray]:
    """Token fraction and eigenvalue score of every head from the dense circuits and `eigvals` of `(vocab, vocab)`."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    fraction, eigen = np.zeros((n_layer, n_head)), np.zeros((n_layer, n_head))
    for layer in range(n_layer):
        for head in range(n_head):
            M = dense_circuit(model, layer, head)
            fraction[layer, head] = (M.argmax(dim=0) == torch.arange(M.shape[1])).double().mean()
            lam = torch.linalg.eigvals(M)
            eigen[layer, head] = lam.sum().real / lam.abs().sum()
    return fraction, eigen


def test_factored_scores_equal_the_dense_circuit(small_model):
    """Both scores of every head match the dense `(vocab, vocab)` computation, with chunks of a few columns."""
    fraction, eigen = dense_scores(small_model)
    scores = ov_copying_scores(small_model, max_elements=8 * 97 * 5, dtype=torch.float64)  # chunks: 5 heads, 8 columns
    np.testing.assert_allclose(scores.token_fraction, fraction, atol=1e-12)
    np.testing.assert_allclose(scores.eigen_score, eigen, atol=1e-8)
    assert scores.chance_fraction == pytest.approx(1 / 97)
    float32 = ov_copying_scores(small_model)
    np.testing.assert_allclose(float32.token_fraction, fraction, atol=1e-12)
    np.testing.assert_allclose(float32.eigen_score, eigen, atol=1e-8)


def test_a_subset_of_sources_counts_only_those_columns(small_model):
    """With `sources`, the fraction is the share of wins among those columns of the dense circuit."""
    sources = [3, 10, 50, 96]
    scores = ov_copying_scores(small_model, sources=sources)
    for layer, head in [(0, 0), (1, 3)]:
        M = dense_circuit(small_model, layer, head)
        expected = np.mean([int(M[:, s].argmax()) == s for s in sources])
        assert scores.token_fraction[layer, head] == pytest.approx(expected)


def parts_with(w_o: torch.Tensor, w_v: torch.Tensor, seed: int = 0) -> OVParts:
    """One head with tied embedding `X` `(20, d_model)` and the given `W_O`, `W_V` `(d_model, d_head)`."""
    X = torch.randn(20, w_o.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return OVParts(w_e=X, w_u=X, w_o=w_o[None], w_v=w_v[None])


def test_eigen_score_is_one_for_copying_minus_one_for_suppressing_and_zero_for_a_rotation():
    """`M = X Xᵀ` scores 1, `-X Xᵀ` scores -1, and `X R Xᵀ` with a 90-degree rotation `R` scores 0."""
    identity = torch.eye(4, dtype=torch.float64)
    assert float(eigenvalue_copying_score(parts_with(identity, identity))) == pytest.approx(1.0)
    assert float(eigenvalue_copying_score(parts_with(-identity, identity))) == pytest.approx(-1.0)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    assert float(eigenvalue_copying_score(parts_with(rotation, torch.eye(2, dtype=torch.float64)))) == pytest.approx(
        0.0, abs=1e-12
    )


def test_circuit_block_is_the_dense_block(small_model):
    """`ov_circuit_block` returns rows (outputs) and columns (sources) of the dense circuit."""
    tokens = [5, 1, 40]
    block = ov_circuit_block(small_model, 1, 2, tokens)
    M = dense_circuit(small_model, 1, 2)
    np.testing.assert_allclose(block, M[tokens][:, tokens].numpy(), atol=1e-12)


def test_bad_arguments_name_the_allowed_range(small_model):
    """Source ids, heads and a too small chunk budget raise an `IHLibError` with the range."""
    with pytest.raises(IHLibError, match=r"sources .* 0\.\.96"):
        ov_copying_scores(small_model, sources=[97])
    with pytest.raises(IHLibError, match=r"layers 0\.\.1"):
        ov_circuit_block(small_model, 2, 0, [0])
    with pytest.raises(IHLibError, match="max_elements"):
        ov_copying_scores(small_model, max_elements=10)


def test_the_copy_models_induction_heads_copy_and_its_idle_layer_does_not(copy_model):
    """Embedded model: every layer-1 head (all IHs) copies (fraction >= 0.35, eigen >= 0.95); layer 2 does not."""
    scores = ov_copying_scores(copy_model)
    assert scores.token_fraction[1].min() >= 0.35
    assert scores.eigen_score[1].min() >= 0.95
    assert scores.token_fraction[2].max() <= 0.05  # chance is 1/512 ~ 0.002


def test_a_vocabulary_larger_than_max_sources_is_scored_on_a_seeded_sample_of_its_tokens(small_model):
    """97 tokens, at most 40 sources: a sorted, seeded sample of 40 distinct ids; the same seed gives the same ids."""
    sampled = ov_copying_scores(small_model, max_sources=40, seed=3)
    assert sampled.sources.size == 40 and np.all(np.diff(sampled.sources) > 0) and sampled.vocab_size == 97
    np.testing.assert_array_equal(sampled.sources, ov_copying_scores(small_model, max_sources=40, seed=3).sources)
    explicit = ov_copying_scores(small_model, sources=sampled.sources)
    np.testing.assert_allclose(sampled.token_fraction, explicit.token_fraction)
    assert ov_copying_scores(small_model).sources.size == 97  # below MAX_SOURCES: every token
