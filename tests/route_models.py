"""Hand-built 2-layer GPT-2s whose previous-token route is known: written straight into the induction head's keys,
or carried through MLP0 (DESIGN.md section 6).

The residual space splits into orthonormal subspaces orthogonal to the all-ones vector: `T` (token identity), `P`
(sinusoidal positions), `S1` (what the shifting head writes), `S2` (what MLP0 writes) and `O` (what the induction
head writes, read by an untied unembedding). L0H0 is the shifting head (query `P`, key `R P` with `R` one step of
rotation, value `T`, output `S1`); L1H0 the induction head (query `T`, key `S1` (direct) or `S2` (through MLP0),
value `T`, output `O`). In the MLP model MLP0 copies `S1` to `S2` through GELU units kept in their linear range by a
large bias (cancelled by the output bias); in the direct model MLP0 is zero. Every other weight is 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import GPT2Config

from ihlib.model.loading import new_model

VOCAB = 32
N_FREQ = 7  # sinusoidal pairs of the position code
PERIODS = (4, 5, 6, 8, 12, 16, 32)
D_MODEL = 4 * VOCAB + 2 * N_FREQ + 2  # T, S1, S2, O, P, the ones direction and one spare: 144
N_HEAD = 4
D_HEAD = D_MODEL // N_HEAD  # 36
N_POS = 64
SHIFT_SHARPNESS = 20.0
MATCH_SHARPNESS = 0.25
MLP_BIAS = 20.0


def subspaces(seed: int = 0) -> dict[str, torch.Tensor]:
    """Orthonormal bases `(D_MODEL, dim)` of T, S1, S2, O, P, each orthogonal to the all-ones vector."""
    rng = np.random.default_rng(seed)
    raw = np.concatenate([np.ones((D_MODEL, 1)), rng.normal(size=(D_MODEL, D_MODEL - 1))], axis=1)
    basis = torch.from_numpy(np.linalg.qr(raw)[0][:, 1:]).float()
    sizes = {"T": VOCAB, "S1": VOCAB, "S2": VOCAB, "O": VOCAB, "P": 2 * N_FREQ}
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = basis[:, start : start + size]
        start += size
    return out


def position_code(n_pos: int = N_POS) -> torch.Tensor:
    """Sinusoidal coordinates `(n_pos, 2 * N_FREQ)` of unit norm: pairs `(cos, sin)(2 pi i / period)`."""
    i = torch.arange(n_pos, dtype=torch.float64)[:, None]
    angles = 2 * math.pi * i / torch.tensor(PERIODS, dtype=torch.float64)
    pairs = torch.stack([angles.cos(), angles.sin()], dim=-1).flatten(1)
    return (pairs / math.sqrt(N_FREQ)).float()


def one_step_rotation() -> torch.Tensor:
    """`R (2 N_FREQ, 2 N_FREQ)` with `R c_i = c_{i+1}` for the position code's rows `c_i`."""
    blocks = []
    for period in PERIODS:
        a = 2 * math.pi / period
        blocks.append(torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))
    return torch.block_diag(*blocks).float()


def set_head(block, head: int, *, w_q, w_k, w_v, w_o) -> None:
    """Write head `head`'s `W_q, W_k, W_v (d_model, k)` and `W_o (d_model, k)` (column convention), `k <= d_head`."""
    d = D_MODEL
    for index, w in enumerate((w_q, w_k, w_v)):
        start = index * d + head * D_HEAD
        block.attn.c_attn.weight[:, start : start + w.shape[1]] = w
    block.attn.c_proj.weight[head * D_HEAD : head * D_HEAD + w_o.shape[1]] = w_o.T


def route_model(route: str, *, seed: int = 0):
    """A 2-layer GPT2LMHeadModel with one shifting head (L0H0) and one induction head (L1H0) composing `route`:
    "direct" (the IH's keys read what the shifting head writes) or "mlp" (they read MLP0's copy of it)."""
    if route not in ("direct", "mlp"):
        raise ValueError(f"route must be 'direct' or 'mlp', got {route!r}")
    config = GPT2Config(
        n_layer=2, n_head=N_HEAD, n_embd=D_MODEL, vocab_size=VOCAB, n_positions=N_POS, tie_word_embeddings=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    model = new_model(config).eval()
    space = subspaces(seed)
    ln_scale = math.sqrt(D_MODEL / 2)  # layer norm's gain on a residual of norm sqrt(2) (a token and a position)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
        body = model.transformer
        body.wte.weight.copy_(space["T"].T)
        body.wpe.weight.copy_(position_code() @ space["P"].T)
        shifting, induction = body.h[0], body.h[1]
        sharp_shift = SHIFT_SHARPNESS * math.sqrt(D_HEAD) / ln_scale**2
        set_head(
            shifting, 0,
            w_q=sharp_shift * space["P"], w_k=space["P"] @ one_step_rotation().T,
            w_v=space["T"] / ln_scale, w_o=space["S1"],
        )  # fmt: skip
        key_space = space["S1"] if route == "direct" else space["S2"]
        sharp_match = MATCH_SHARPNESS * math.sqrt(D_HEAD)
        set_head(induction, 0, w_q=sharp_match * space["T"], w_k=key_space, w_v=space["T"], w_o=space["O"])
        if route == "mlp":
            mlp = shifting.mlp
            mlp.c_fc.weight[:, :VOCAB] = space["S1"]
            mlp.c_fc.bias[:VOCAB] = MLP_BIAS
            mlp.c_proj.weight[:VOCAB] = space["S2"].T / ln_scale
            mlp.c_proj.bias.copy_(-MLP_BIAS * space["S2"].sum(1) / ln_scale)
        model.lm_head.weight.copy_(space["O"].T)
    return model
