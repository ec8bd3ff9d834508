"""Copying metrics: probability of the correct next token and top-1 error, batched."""

from __future__ import annotations

import numpy as np
import torch

from ihlib.errors import IHLibError
from ihlib.models import AnyGPT2, transformer_of, unembedding


def pred_probs(
    model: AnyGPT2,
    input_ids: torch.Tensor,
    positions: np.ndarray | list[int] | None = None,
    chunk_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Return `(probs, errs)`, each `(batch, n_positions)`: P(correct next token) and top-1 error per query position.

    Query position `t` predicts token `t + 1`; `positions=None` scores every `t < seq - 1`.
    Works for `GPT2Model` (tied `wte` unembedding) and `GPT2LMHeadModel`; samples run in chunks.
    """
    if input_ids.ndim != 2:
        raise IHLibError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}.")
    seq = input_ids.shape[1]
    positions = np.arange(seq - 1) if positions is None else np.asarray(positions)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= seq - 1:
        raise IHLibError(f"positions must lie in 0..{seq - 2} for sequences of length {seq}.")
    body = transformer_of(model)
    w_u = unembedding(model)
    device = w_u.device
    pos = torch.as_tensor(positions, device=device)
    probs, errs = [], []
    with torch.no_grad():
        for chunk in input_ids.to(device).split(chunk_size):
            hidden = body(chunk).last_hidden_state[:, pos]  # (b, n_pos, d_model)
            logits = (hidden @ w_u.T).float()
            target = chunk[:, pos + 1]
            log_p = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            probs.append(log_p.exp().cpu())
            errs.append((logits.argmax(-1) != target).float().cpu())
    return torch.cat(probs).numpy(), torch.cat(errs).numpy()
