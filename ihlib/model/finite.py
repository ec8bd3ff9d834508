"""Weights that are not finite (NaN, inf) make every score NaN: find them, naming the tensors and the heads."""

from __future__ import annotations

import re

import torch

from ihlib.model.errors import ModelLoadError

ATTENTION_TENSOR = re.compile(r"h\.(\d+)\.attn\.(c_attn|c_proj)\.(weight|bias)$")


def check_finite_weights(source: str, model: torch.nn.Module) -> None:
    """Raise ModelLoadError when a tensor of `model` holds NaN or inf, naming the tensors and the attention heads
    `(layer, head)` they touch."""
    bad = [(name, tensor) for name, tensor in model.state_dict().items() if not torch.isfinite(tensor).all()]
    if not bad:
        return
    heads = sorted({head for name, tensor in bad for head in _heads_touched(name, tensor, model.config)})
    where = f"; attention heads (layer, head) affected: {', '.join(map(str, heads))}" if heads else ""
    raise ModelLoadError(
        f"Model {source!r} has weights that are not finite (NaN or inf) in {', '.join(name for name, _ in bad)}"
        f"{where}. Every score through them would be NaN; restore the checkpoint from a good copy or retrain."
    )


def _heads_touched(name: str, tensor: torch.Tensor, config: object) -> list[tuple[int, int]]:
    """The heads whose slice of attention tensor `name` (GPT-2's Conv1D layout) holds a non-finite value."""
    match = ATTENTION_TENSOR.search(name)
    if match is None:
        return []
    layer, module, kind = int(match.group(1)), match.group(2), match.group(3)
    d_head = config.n_embd // config.n_head
    bad = ~torch.isfinite(tensor)
    if module == "c_attn":  # weight (d_model, 3 d_model), bias (3 d_model): columns q | k | v, each head by head
        columns = bad.reshape(-1, bad.shape[-1]).any(dim=0)
        per_head = columns.reshape(3, config.n_head, d_head).any(dim=(0, 2))
    elif kind == "weight":  # c_proj weight (d_model, d_model): rows head by head
        per_head = bad.any(dim=1).reshape(config.n_head, d_head).any(dim=1)
    else:  # c_proj bias: added after the heads are summed, so it belongs to no one head
        return []
    return [(layer, int(head)) for head in torch.nonzero(per_head).flatten()]
