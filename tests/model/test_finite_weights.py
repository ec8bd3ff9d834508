"""A checkpoint with NaN or inf weights is a load error naming the tensors and heads, not NaN scores later."""

from __future__ import annotations

import pytest
import torch
from conftest import random_gpt2

from ihlib.model.errors import ModelLoadError
from ihlib.model.loading import load_model


@pytest.mark.parametrize(
    ("tensor", "index", "heads"),
    [
        ("transformer.h.1.attn.c_attn.weight", (0, 32 + 8 * 2 + 3), "(1, 2)"),  # a key column of head 2 (d_head 8)
        ("transformer.h.0.attn.c_proj.weight", (8 * 3 + 1, 5), "(0, 3)"),  # an input row of head 3
        ("transformer.h.0.attn.c_attn.bias", (64 + 1,), "(0, 0)"),  # a value entry of head 0
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_a_non_finite_head_weight_is_refused_naming_tensor_and_head(
    tmp_path, tensor, index, heads, value
):
    model = random_gpt2()
    with torch.no_grad():
        model.state_dict()[tensor][index] = value
    model.save_pretrained(tmp_path / "bad")
    with pytest.raises(ModelLoadError) as raised:
        load_model(tmp_path / "bad", device="cpu")
    message = str(raised.value)
    assert f"not finite (NaN or inf) in {tensor}" in message
    assert f"attention heads (layer, head) affected: {heads}." in message


def test_a_non_finite_weight_outside_attention_is_named_without_heads(tmp_path):
    model = random_gpt2()
    with torch.no_grad():
        model.transformer.ln_f.weight[3] = float("nan")
    model.save_pretrained(tmp_path / "bad")
    with pytest.raises(ModelLoadError, match=r"not finite \(NaN or inf\) in transformer\.ln_f\.weight\. Every score"):
        load_model(tmp_path / "bad", device="cpu")


def test_finite_checkpoints_load(tmp_path):
    random_gpt2().save_pretrained(tmp_path / "good")
    assert load_model(tmp_path / "good", device="cpu").transformer.h[0].attn.c_attn.weight.isfinite().all()
