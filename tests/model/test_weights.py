"""The weight split reproduces the model's own attention patterns and attention output."""

from __future__ import annotations

import math

import pytest
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.loading import transformer_of
from ihlib.model.weights import head_biases, head_weights, ov, qk


def capture_attention_io(model, ids):
    """Run `model` on `ids`; return per-layer ln_1 outputs, attention outputs and attention weights."""
    body = transformer_of(model)
    ln_out, attn_out = [], []
    hooks = [b.ln_1.register_forward_hook(lambda m, i, o: ln_out.append(o)) for b in body.h]
    hooks += [b.attn.register_forward_hook(lambda m, i, o: attn_out.append(o[0])) for b in body.h]
    with torch.no_grad():
        out = body(ids, output_attentions=True)
    for h in hooks:
        h.remove()
    return ln_out, attn_out, out.attentions


def recomputed_patterns(x, W_all_l, bias_l):
    """Attention `(batch, n_head, seq, seq)` from ln_1 output `x` and one layer's split weights and q|k biases."""
    q = torch.einsum("btd,hde->bhte", x, W_all_l[:, 0]) + bias_l[:, 0][None, :, None]
    k = torch.einsum("btd,hde->bhte", x, W_all_l[:, 1]) + bias_l[:, 1][None, :, None]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    seq = x.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)


def recomputed_attention_output(x, pattern, W_all_l, bias_l, out_bias):
    """Attention block output `(batch, seq, d_model)` as the sum of per-head `W_o^T`-writes of `pattern @ values`."""
    v = torch.einsum("btd,hde->bhte", x, W_all_l[:, 2]) + bias_l[:, 2][None, :, None]
    z = pattern @ v  # (batch, head, seq, d_head)
    return torch.einsum("bhte,hde->btd", z, W_all_l[:, 3]) + out_bias


def check_split_against_model(model, seq: int = 20):
    """Assert that patterns and attention outputs recomputed from the split match the model (1e-5)."""
    ids = torch.randint(0, model.config.vocab_size, (3, seq), generator=torch.Generator().manual_seed(0))
    ln_out, attn_out, attentions = capture_attention_io(model, ids)
    W_all = head_weights(model).double()
    qkv_bias, out_bias = (b.double() for b in head_biases(model))
    for layer, x in enumerate(ln_out):
        x = x.double()
        pattern = recomputed_patterns(x, W_all[layer], qkv_bias[layer])
        assert torch.allclose(pattern, attentions[layer].double(), atol=1e-5), f"pattern of layer {layer}"
        out = recomputed_attention_output(x, pattern, W_all[layer], qkv_bias[layer], out_bias[layer])
        assert torch.allclose(out, attn_out[layer].double(), atol=1e-5), f"output of layer {layer}"


def test_split_reproduces_attention_of_small_random_model(small_model):
    check_split_against_model(small_model)


def test_split_reproduces_attention_of_gpt2_small_shaped_model(gpt2_small_shaped):
    W_all = head_weights(gpt2_small_shaped)
    assert W_all.shape == (12, 12, 4, 768, 64)
    check_split_against_model(gpt2_small_shaped, seq=12)


def test_split_reproduces_attention_of_the_copy_model(copy_model):
    check_split_against_model(copy_model)


def test_split_matches_conv1d_slices_of_gpt2_small_shaped_model(gpt2_small_shaped):
    W_all = head_weights(gpt2_small_shaped)
    attn = gpt2_small_shaped.transformer.h[7].attn
    head, d = 5, 768
    cols = slice(head * 64, (head + 1) * 64)
    assert torch.equal(W_all[7, head, 0], attn.c_attn.weight[:, cols])
    assert torch.equal(W_all[7, head, 1], attn.c_attn.weight[:, d + head * 64 : d + (head + 1) * 64])
    assert torch.equal(W_all[7, head, 2], attn.c_attn.weight[:, 2 * d + head * 64 : 2 * d + (head + 1) * 64])
    assert torch.equal(W_all[7, head, 3], attn.c_proj.weight[cols].T)


def test_split_is_the_same_for_body_and_lm_head_model(small_model):
    assert torch.equal(head_weights(small_model), head_weights(small_model.transformer))


def test_qk_and_ov_are_the_products_of_the_split(small_model):
    W_all = head_weights(small_model)
    w = W_all[1, 2]
    assert torch.allclose(qk(W_all, 1, 2), w[0] @ w[1].T)
    assert torch.allclose(ov(W_all, 1, 2), w[3] @ w[2].T)
    assert torch.linalg.matrix_rank(qk(W_all, 1, 2)).item() == 8


@pytest.mark.parametrize(("layer", "head", "message"), [(2, 0, "layers 0..1"), (0, 4, "heads 0..3"), (-1, 0, "0..1")])
def test_out_of_range_heads_name_the_allowed_range(small_model, layer, head, message):
    with pytest.raises(IHLibError, match=message):
        qk(head_weights(small_model), layer, head)


def test_wrong_w_all_shape_is_rejected():
    with pytest.raises(IHLibError, match=r"n_layer, n_head, 4, d_model, d_head"):
        ov(torch.zeros(2, 3, 32, 8), 0, 0)
