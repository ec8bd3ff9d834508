"""Split GPT-2 attention weights per head: `W_all[l, h] = [W_q, W_k, W_v, W_o^T]`, each `(d_model, d_head)`."""

from __future__ import annotations

import torch

from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_heads
from ihlib.model.loading import AnyGPT2, transformer_of

Q, K, V, O = 0, 1, 2, 3


def head_weights(model: AnyGPT2) -> torch.Tensor:
    """Return `W_all` of shape `(n_layer, n_head, 4, d_model, d_head)`: `[W_q, W_k, W_v, W_o^T]` per head.

    Conv1D convention: `q = x @ W_q`; the head writes `z @ W_o^T.T`, i.e. `W_o^T` column space.
    """
    body = transformer_of(model)
    n_head = model.config.n_head
    layers = [_layer_head_weights(block.attn, n_head) for block in body.h]
    return torch.stack(layers).detach().clone()


def _layer_head_weights(attn: torch.nn.Module, n_head: int) -> torch.Tensor:
    """Return one layer's `(n_head, 4, d_model, d_head)` split of `c_attn` and `c_proj`."""
    w_qkv = attn.c_attn.weight  # (d_model, 3 * d_model): q | k | v, each split by head
    d_model = w_qkv.shape[0]
    d_head = d_model // n_head
    qkv = w_qkv.view(d_model, 3, n_head, d_head).permute(2, 1, 0, 3)  # (n_head, 3, d_model, d_head)
    w_o = attn.c_proj.weight.view(n_head, d_head, d_model).transpose(1, 2)  # (n_head, d_model, d_head)
    return torch.cat([qkv, w_o.unsqueeze(1)], dim=1)


def head_biases(model: AnyGPT2) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the q|k|v bias slices `(n_layer, n_head, 3, d_head)` and the `c_proj` bias `(n_layer, d_model)`."""
    body = transformer_of(model)
    n_head = model.config.n_head
    qkv = torch.stack([b.attn.c_attn.bias.view(3, n_head, -1).transpose(0, 1) for b in body.h])
    out = torch.stack([b.attn.c_proj.bias for b in body.h])
    return qkv.detach().clone(), out.detach().clone()


def check_w_all(W_all: torch.Tensor) -> None:
    """Raise unless `W_all` is finite, floating, `(n_layer, n_head, 4, d_model, d_head)` with d_model >= d_head."""
    fix = "build it with ihlib.head_weights(model)."
    if not isinstance(W_all, torch.Tensor) or W_all.ndim != 5 or W_all.shape[2] != 4:
        shape = tuple(W_all.shape) if hasattr(W_all, "shape") else type(W_all).__name__
        raise IHLibError(f"W_all must have shape (n_layer, n_head, 4, d_model, d_head), got {shape}; {fix}")
    d_model, d_head = W_all.shape[-2:]
    if d_model < d_head:
        raise IHLibError(
            f"W_all has shape {tuple(W_all.shape)}: d_model={d_model} < d_head={d_head}, "
            f"so its last two axes look transposed; {fix}"
        )
    if not W_all.is_floating_point():
        raise IHLibError(f"W_all has dtype {W_all.dtype}; it must be floating point: {fix}")
    if not bool(torch.isfinite(torch.stack(W_all.aminmax())).all()):  # NaN propagates; two reductions, no mask
        raise IHLibError(f"W_all holds NaN or infinite values: {fix}")


def qk(W_all: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """Return `W_qk = W_q W_k^T`, `(d_model, d_model)`: score = `x_i^T W_qk x_j`."""
    check_w_all(W_all)
    ((layer, head),) = check_heads([[layer, head]], tuple(W_all.shape[:2]))
    w = W_all[layer, head]
    return w[Q] @ w[K].T


def ov(W_all: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """Return `W_ov = W_o W_v^T`, `(d_model, d_model)`: the head writes `W_ov x` (column convention)."""
    check_w_all(W_all)
    ((layer, head),) = check_heads([[layer, head]], tuple(W_all.shape[:2]))
    w = W_all[layer, head]
    return w[O] @ w[V].T
