"""Two more recognisable kinds of heads, scored on the same repeated random segments as `ihlib.heads.scoring`.

- duplicate-token score: attention (renormalised without position 0, as for the induction score) from each query
  of segments 2..rep to the earlier occurrences of its own token, `i - k * seg_len >= 1`, averaged over the queries
  that have one; an induction head looks one position further, at the token after them;
- first-token score: raw attention on position 0, averaged over queries 1..T-1: a head that parks its attention
  there whatever the tokens (an attention sink) behaves by position, not by content.

A head counts as one of a kind by the book's rule (`ihlib.heads`): at least half the best head's score of that
kind and `MARGIN` above the score of a head that attends uniformly to every earlier token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ihlib.heads.scoring import attention_patterns, check_fits_context, renormalise_without_first
from ihlib.heads.selection import FRACTION, MARGIN
from ihlib.model.batches import repeated_tokens
from ihlib.model.head_ids import head_label, rank_heads
from ihlib.model.loading import AnyGPT2

OTHER_KINDS: tuple[str, ...] = ("duplicate", "first_token")
KIND_LABELS = {"duplicate": "duplicate-token head", "first_token": "first-token head"}


def duplicate_mask(seg_len: int, rep: int) -> torch.Tensor:
    """`(T, T)` 0/1 mask, `T = rep * seg_len`: query `i` of segment r >= 1 marks earlier occurrences of its token."""
    t = rep * seg_len
    query = torch.arange(t)[:, None]
    key = torch.arange(t)[None, :]
    return ((query >= seg_len) & (key >= 1) & (key < query) & ((query - key) % seg_len == 0)).double()


def kind_scores_from_attention(attn: torch.Tensor, seg_len: int, rep: int) -> dict[str, np.ndarray]:
    """Duplicate-token and first-token scores `(...)` from raw attention `(..., T, T)` on repeated segments."""
    mask = duplicate_mask(seg_len, rep)
    has_earlier = mask.sum(-1) > 0  # queries with an earlier occurrence past position 0
    duplicate = (renormalise_without_first(attn.double()) * mask).sum(-1)[..., has_earlier].mean(-1)
    first_token = attn.double()[..., 1:, 0].mean(-1)
    return {"duplicate": duplicate.numpy(), "first_token": first_token.numpy()}


def uniform_kind_scores(seg_len: int = 25, rep: int = 3) -> dict[str, float]:
    """The scores of a head that attends uniformly to every earlier token (the baseline of each kind)."""
    t = rep * seg_len
    causal = torch.tril(torch.ones(t, t, dtype=torch.float64))
    return {
        kind: float(value)
        for kind, value in kind_scores_from_attention(causal / causal.sum(-1, keepdim=True), seg_len, rep).items()
    }


@dataclass(frozen=True)
class OtherKindScores:
    """Per-head duplicate-token and first-token scores, each `(n_layer, n_head)`, and their uniform baselines."""

    duplicate: np.ndarray
    first_token: np.ndarray
    uniform: dict[str, float]

    name = "other_kinds"

    def bar(self, kind: str) -> float:
        """The score a `kind` head must reach: `max(FRACTION x best, uniform + MARGIN)`."""
        return float(max(FRACTION * getattr(self, kind).max(), self.uniform[kind] + MARGIN))

    def heads(self, kind: str) -> list[str]:
        """The heads that count as `kind`, best first, as `L{layer}H{head}`."""
        values, bar = getattr(self, kind), self.bar(kind)
        return [head_label(layer, head) for layer, head in rank_heads(values) if values[layer, head] >= bar]

    def table(self) -> pd.DataFrame:
        """One row per kind: the heads that count, the best score, the bar and the uniform head's score."""
        return pd.DataFrame(
            [
                {
                    "kind": KIND_LABELS[kind],
                    "heads that count": ", ".join(self.heads(kind)) or "none",
                    "best score": round(float(getattr(self, kind).max()), 3),
                    "bar": round(self.bar(kind), 3),
                    "uniform head": round(self.uniform[kind], 3),
                }
                for kind in OTHER_KINDS
            ]
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The score arrays, `(n_layer, n_head)` each."""
        return {"duplicate": self.duplicate, "first_token": self.first_token}

    def record(self) -> dict:
        """JSON-friendly scores, baselines and the heads that count."""
        return {
            "duplicate": self.duplicate.tolist(),
            "first_token": self.first_token.tolist(),
            "uniform": self.uniform,
            "counting": {kind: self.heads(kind) for kind in OTHER_KINDS},
        }


def other_kind_scores(
    model: AnyGPT2, *, batch_size: int = 50, seg_len: int = 25, rep: int = 3, seed: int = 0
) -> OtherKindScores:
    """Score every head as a duplicate-token and a first-token head on `batch_size` repeated random segments."""
    ids = repeated_tokens(batch_size, seg_len, model.config.vocab_size, rep=rep, seed=seed)
    check_fits_context(model, ids)
    scores = kind_scores_from_attention(attention_patterns(model, ids).mean(dim=1), seg_len, rep)
    return OtherKindScores(**scores, uniform=uniform_kind_scores(seg_len, rep))
