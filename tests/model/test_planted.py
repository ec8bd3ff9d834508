"""Planted models: the hand-written circuit copies, its heads count as their kind by the book's rule, others do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.core.copying import copy_accuracy
from ihlib.heads.scoring import attention_patterns, head_scores
from ihlib.heads.selection import counting_heads, head_role
from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import ParameterError
from ihlib.model.loading import load_model, model_label
from ihlib.model.planted import planted_model, position_code, position_margin, shift_rotation, token_code
from ihlib.model.planted_layout import SHAPES, VARIANTS, planted_heads
from ihlib.model.planted_truth import CLAIMS, TRUTH
from ihlib.model.weights import head_weights


@pytest.fixture(scope="module")
def direct():
    """The default variant at the test shape."""
    return planted_model("direct")


def test_planted_direct_copies_repeated_random_tokens_at_top1_above_0_9(direct):
    assert copy_accuracy(direct, batch_size=20) >= 0.9


@pytest.mark.parametrize("variant", ["mlp", "two-circuits", "one-layer"])
def test_every_copying_variant_copies_at_top1_above_0_9(variant):
    assert copy_accuracy(planted_model(variant), batch_size=20) >= 0.9


def test_no_composition_copies_at_its_own_offset_only():
    model = planted_model("no-composition")
    assert copy_accuracy(model, seg_len=25, batch_size=20) >= 0.9
    assert copy_accuracy(model, seg_len=20, batch_size=20) <= 0.1


def test_shifting_heads_attend_to_the_previous_position(direct):
    ids = repeated_tokens(4, 20, direct.config.vocab_size, rep=3, seed=1)
    attn = attention_patterns(direct, ids)  # (L, B, H, T, T)
    for layer, head in planted_heads("direct")["shifting"]:
        previous = torch.diagonal(attn[layer, :, head], offset=-1, dim1=-2, dim2=-1)[:, 1:]
        assert float(previous.mean()) > 0.99


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_planted_heads_and_only_they_count_by_the_books_rule(variant):
    scores = head_scores(planted_model(variant), batch_size=20)
    planted = planted_heads(variant)
    expected_ih = planted["induction"] + planted["positional"]
    assert sorted(counting_heads(scores, "induction")) == sorted(expected_ih)
    assert sorted(counting_heads(scores, "shifting")) == sorted(planted["shifting"])
    circuit = expected_ih + planted["shifting"]
    others = [[l, h] for l in range(scores.induction.shape[0]) for h in range(scores.induction.shape[1])]
    assert all(head_role(scores, l, h) == "neither" for l, h in others if [l, h] not in circuit)


def test_other_heads_attend_almost_uniformly(direct):
    scores = head_scores(direct, batch_size=20)
    planted = planted_heads("direct")
    mask = np.ones(scores.induction.shape, bool)
    for layer, head in planted["induction"] + planted["shifting"]:
        mask[layer, head] = False
    assert np.abs(scores.induction[mask] - scores.uniform["induction"]).max() < 0.05
    assert np.abs(scores.shifting[mask] - scores.uniform["shifting"]).max() < 0.05


def test_builder_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b, c = (head_weights(planted_model("mlp", seed=s)) for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_weights_are_finite(variant):
    model = planted_model(variant)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_position_code_shifts_by_a_fixed_rotation():
    rng = np.random.default_rng(0)
    code = position_code(50, 8, rng)
    w = np.arctan2(code[1, 1::2], code[1, 0::2])
    rotation = shift_rotation(8, w, 3)
    assert np.allclose(code[10:] @ rotation.T, code[7:-3], atol=1e-12)
    assert 0 < position_margin(code, 1) <= 2


def test_token_codes_are_unit_and_distinct():
    code = token_code(500, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(code, axis=1), 1.0)
    gram = code @ code.T
    np.fill_diagonal(gram, 0)
    assert gram.max() < 0.99


def test_load_model_builds_planted_names_and_labels_them():
    model = load_model("planted-two-circuits-tiny", device="cpu")
    assert model.config.n_layer == SHAPES["tiny"].n_layer and not model.config.tie_word_embeddings
    assert model_label(model) == "planted-two-circuits-tiny"


def test_unknown_planted_names_say_what_to_use():
    with pytest.raises(ParameterError, match="planted-<variant>-<shape>"):
        load_model("planted-direct-huge", device="cpu")
    with pytest.raises(ParameterError, match="Unknown planted variant"):
        load_model("planted-nothing-tiny", device="cpu")


def test_truth_names_a_known_label_for_every_variant_and_claim():
    labels = {"supported", "partly supported", "not supported", "not informative", "not tested"}
    assert set(TRUTH) == set(VARIANTS)
    for variant, claims in TRUTH.items():
        assert tuple(claims) == CLAIMS, variant
        assert all(claims[c] and claims[c] <= labels for c in CLAIMS)


@pytest.mark.slow
def test_planted_gpt2_small_has_gpt2_small_shapes_and_copies():
    model = load_model("planted-gpt2-small", device="cpu")
    config = model.config
    assert (config.n_layer, config.n_head, config.n_embd, config.vocab_size, config.n_positions) == (
        12,
        12,
        768,
        50257,
        1024,
    )
    assert config.n_inner in (None, 3072)
    assert copy_accuracy(model, batch_size=10) >= 0.9
