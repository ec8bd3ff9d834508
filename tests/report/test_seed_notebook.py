"""The seed notebook's cells run with `from ihlib import ...` on a `GPT2Model`, with the seed's call shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib import (
    create_folder,
    exchange_edit,
    head_scores,
    head_weights,
    pred_probs,
    project_exp,
    qkov_matching,
    qkov_matching_summary,
    shuffle_exp,
    subspace_matching,
)

pytestmark = pytest.mark.slow  # executes notebooks or draws figures


def seed_w_all(model) -> torch.Tensor:
    """Step 1-1-3 of the seed, verbatim apart from the shapes: the per-head loop over `c_attn` and `c_proj`."""
    config = model.config
    num_layer, num_heads, d_model = config.n_layer, config.n_head, config.n_embd
    d_head = d_model // num_heads
    W_all = torch.zeros(num_layer, num_heads, 4, d_model, d_head)
    for layer in range(num_layer):
        W_q, W_k, W_v = model.h[layer].attn.c_attn.weight.split(d_model, dim=1)
        W_q = W_q.view(d_model, num_heads, d_head)
        W_k = W_k.view(d_model, num_heads, d_head)
        W_v = W_v.view(d_model, num_heads, d_head)
        W_o = model.h[layer].attn.c_proj.weight.view(num_heads, d_head, d_model)
        for head in range(num_heads):
            W_all[layer, head, 0] = W_q[:, head, :]
            W_all[layer, head, 1] = W_k[:, head, :]
            W_all[layer, head, 2] = W_v[:, head, :]
            W_all[layer, head, 3] = W_o[head, :, :].T
    return W_all


def test_seed_cells_run_on_the_body_of_the_copy_model(copy_model, tmp_path):
    model = copy_model.transformer  # the seed passes a GPT2Model: tied unembedding
    configuration, vocab_size = model.config, model.config.vocab_size
    W_all = seed_w_all(model)
    assert torch.equal(W_all, head_weights(model))
    scores = head_scores(model)
    IH_list, Shifting_list = scores.IH_list, scores.Shifting_list
    create_folder(tmp_path / "Figs" / "diagonal")

    qkov_matching(W_all, IH_list[:3], str(tmp_path / "Figs/diagonal"))
    z = qkov_matching_summary(W_all, IH_list[:4], Shifting_list[:3], str(tmp_path / "Figs/diagonal"))
    assert z.shape == (4, 3) and np.isfinite(z).all()

    s_match, match_baseline = subspace_matching(W_all, str(tmp_path / "Figs/sm"), IH_list=IH_list[:4], ranks=[2, 3])
    assert s_match.shape == (2, 2, 4, 4) and match_baseline.shape == (2, 2, 50)
    assert np.allclose(np.diagonal(s_match, axis1=2, axis2=3), 1.0, atol=1e-5)

    probs, errs = shuffle_exp(
        model,
        configuration,
        10,
        vocab_size,
        IH_list[:4],
        str(tmp_path / "Figs/shuffle"),
        component="QK",
        n_exp=2,
        batch_size=8,
        progress=False,
    )
    assert np.asarray(errs["original"]).shape == np.asarray(errs["shuffle"]).shape

    before = {k: v.clone() for k, v in model.state_dict().items()}
    probs, errs = project_exp(
        model,
        configuration,
        W_all,
        10,
        vocab_size,
        IH_list[:4],
        IH_list[:6],
        str(tmp_path / "Figs/project"),
        component="QK",
        project_out=True,
        max_rank=10,
        step=5,
        n_exp=1,
        batch_size=8,
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    ids = torch.randint(0, vocab_size, (4, 20))
    with exchange_edit(model, IH_list[:3], component="OV", kind="shuffle", rng=0):
        edited, _ = pred_probs(model, ids)
    restored, _ = pred_probs(model, ids)
    assert edited.shape == restored.shape == (4, 19)
