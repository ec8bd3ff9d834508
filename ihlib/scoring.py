"""Induction and shifting (previous-token) scores for every head, from attention on repeated random tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ihlib.data import repeated_tokens
from ihlib.errors import IHLibError
from ihlib.models import AnyGPT2, transformer_of


@dataclass
class HeadScores:
    """Per-head scores `(n_layer, n_head)` and the rankings derived from them (best first)."""

    induction: np.ndarray
    shifting: np.ndarray

    @property
    def IH_list(self) -> list[list[int]]:
        """Heads as `[layer, head]`, most induction-like first."""
        return rank_heads(self.induction)

    @property
    def Shifting_list(self) -> list[list[int]]:
        """Heads as `[layer, head]`, most previous-token-like first."""
        return rank_heads(self.shifting)


def attention_patterns(model: AnyGPT2, input_ids: torch.Tensor) -> torch.Tensor:
    """Return attention weights `(n_layer, batch, n_head, seq, seq)` of `model` on `input_ids`."""
    body = transformer_of(model)
    device = next(body.parameters()).device
    with torch.no_grad():
        out = body(input_ids.to(device), output_attentions=True)
    if out.attentions is None or out.attentions[0] is None:
        raise IHLibError("The model returned no attention weights: load it with attn_implementation='eager'.")
    return torch.stack(out.attentions).float().cpu()


def renormalise_without_first(attn: torch.Tensor) -> torch.Tensor:
    """Zero attention to and from position 0 (the attention sink) and renormalise rows; shape kept."""
    a = attn.clone()
    a[..., 0, :] = 0
    a[..., :, 0] = 0
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / total.clamp_min(1e-30), a)


def induction_mask(seg_len: int, rep: int, offset: int = 0) -> torch.Tensor:
    """Return `(T, T)` 0/1 mask: query `i` in segment r >= 1 marks the keys after each earlier occurrence."""
    t = offset + rep * seg_len
    mask = torch.zeros(t, t)
    for i in range(offset + seg_len, t):
        for k in range(1, (i - offset) // seg_len + 1):
            j = i - k * seg_len + 1
            if j >= 1:
                mask[i, j] = 1.0
    return mask


def head_scores(
    model: AnyGPT2,
    batch_size: int = 50,
    seg_len: int = 25,
    rep: int = 3,
    seed: int = 0,
    bos_token_id: int | None = None,
) -> HeadScores:
    """Score every head on `batch_size` repeated random segments; returns `(n_layer, n_head)` arrays.

    Induction: renormalised attention summed over the tokens after earlier occurrences, averaged
    over the queries of segments 2..rep. Shifting: attention at offset -1, averaged over queries 2..T-1.
    Both are the means over query positions of `scores_by_position`.
    """
    return scores_from_positions(scores_by_position(model, batch_size, seg_len, rep, seed, bos_token_id))


def scores_from_positions(by_position: dict[str, np.ndarray]) -> HeadScores:
    """Head scores `(n_layer, n_head)`: the means over query positions of `scores_by_position`'s arrays."""
    return HeadScores(*(np.nanmean(by_position[kind], axis=-1) for kind in ("induction", "shifting")))


def scores_by_position(
    model: AnyGPT2,
    batch_size: int = 50,
    seg_len: int = 25,
    rep: int = 3,
    seed: int = 0,
    bos_token_id: int | None = None,
) -> dict[str, np.ndarray]:
    """Induction and shifting score of every head at every query position, `(n_layer, n_head, T)` each.

    NaN where a score is undefined: induction before the second segment, shifting at positions 0 and 1.
    """
    vocab = model.config.vocab_size
    ids = repeated_tokens(batch_size, seg_len, vocab, rep=rep, seed=seed, bos_token_id=bos_token_id)
    if ids.shape[1] > model.config.n_positions:
        raise IHLibError(
            f"seg_len * rep = {ids.shape[1]} tokens exceeds the model's context of {model.config.n_positions}."
        )
    attn = renormalise_without_first(attention_patterns(model, ids)).mean(dim=1)  # (L, H, T, T)
    return position_scores_from_attention(attn, seg_len, rep, offset=int(bos_token_id is not None))


def position_scores_from_attention(attn: torch.Tensor, seg_len: int, rep: int, offset: int = 0) -> dict:
    """Per-query-position scores `(..., T)` from renormalised attention `(..., T, T)`; NaN where undefined."""
    induction = (attn * induction_mask(seg_len, rep, offset)).sum(-1).double()
    induction[..., : offset + seg_len] = float("nan")
    shifting = torch.full(attn.shape[:-1], float("nan"), dtype=torch.float64)
    shifting[..., 2:] = torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1)[..., 1:].double()
    return {"induction": induction.numpy(), "shifting": shifting.numpy()}


def rank_heads(scores: np.ndarray) -> list[list[int]]:
    """Return all heads as `[layer, head]` (plain ints) sorted by `scores` `(n_layer, n_head)`, best first."""
    n_head = scores.shape[1]
    order = np.argsort(-scores, axis=None, kind="stable")
    return [[int(i // n_head), int(i % n_head)] for i in order]


def check_k(K: int, n_available: int, what: str = "K") -> int:
    """Return `K` as int, or raise naming the allowed range `1..n_available`."""
    if not 1 <= int(K) <= n_available:
        raise IHLibError(f"{what}={K} is out of range: choose 1..{n_available} (the number of heads).")
    return int(K)


def write_rankings(scores: HeadScores, save_dir: str | Path, top: int = 0) -> dict[str, Path]:
    """Write the seed's ranking text files and `head_scores.json` to `save_dir`; print the top `top`."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, values in (("induction", scores.induction), ("shifting", scores.shifting)):
        ranking = rank_heads(values)
        lines = [f"Ranking {kind} heads (most likely to unlikely) by attention scores"]
        lines += [f"Layer {l} Head {h}: score {values[l, h]}" for l, h in ranking]
        paths[kind] = save_dir / f"{kind}_head_scores.txt"
        paths[kind].write_text("\n".join(lines) + "\n")
        for line in lines[1 : top + 1]:
            print(line)
    paths["json"] = save_dir / "head_scores.json"
    record = {
        "induction": scores.induction.tolist(),
        "shifting": scores.shifting.tolist(),
        "IH_list": scores.IH_list,
        "Shifting_list": scores.Shifting_list,
    }
    paths["json"].write_text(json.dumps(record, indent=1))
    return paths
