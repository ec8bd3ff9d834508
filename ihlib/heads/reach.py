"""How far into the sequence shifting heads look back: the query positions where a head puts most of its attention
on the previous token, measured on repeated random tokens that fill the model's context.

Reach of a head: the last query position of the first unbroken run, from position 1 on, where its mean attention to
the previous token is at least `LOOKS_BACK`; later positions where it looks back again are listed apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.heads.scoring import attention_patterns
from ihlib.model.batches import repeated_tokens
from ihlib.model.head_ids import check_heads, head_label
from ihlib.model.loading import AnyGPT2

LOOKS_BACK = 0.5  # a head looks back at a query position when at least half its attention goes to the previous token
ATTENTION_BYTES = 512 * 2**20  # bound on the attention weights of all layers held at once (sequences per forward)


@dataclass(frozen=True)
class LookBack:
    """Mean attention to the previous token `previous (n_heads, T)` of `heads` per query position (NaN at 0), on
    `batch_size` sequences of `T = rep * seg_len` repeated random tokens."""

    heads: list[list[int]]
    previous: np.ndarray
    seg_len: int
    rep: int
    batch_size: int

    def reach(self, i: int) -> int:
        """Last query position of head `i`'s first run (from position 1) with previous-token attention >= bar."""
        below = np.flatnonzero(self.previous[i, 1:] < LOOKS_BACK)
        return int(below[0]) if below.size else self.previous.shape[1] - 1

    def returns(self, i: int) -> list[int]:
        """Query positions after head `i`'s reach where it looks back again."""
        later = np.flatnonzero(self.previous[i] >= LOOKS_BACK)
        return [int(p) for p in later if p > self.reach(i)]

    @property
    def common_reach(self) -> int:
        """The reach every head has: the smallest of their reaches."""
        return min(self.reach(i) for i in range(len(self.heads)))

    @property
    def farthest(self) -> tuple[list[int], int]:
        """The head that looks back farthest and its reach: beyond it no head looks back without a break."""
        i = max(range(len(self.heads)), key=self.reach)
        return self.heads[i], self.reach(i)

    def summary(self) -> list[str]:
        """Per head: "L0H0 looks back up to position 49 (again at 61, 62)"."""
        lines = []
        for i, head in enumerate(self.heads):
            again = self.returns(i)
            tail = f" (and again at {len(again)} later position(s): {', '.join(map(str, again[:6]))}" if again else ""
            tail += ", ...)" if len(again) > 6 else (")" if again else "")
            lines.append(f"{head_label(*head)} looks back up to query position {self.reach(i)}{tail}")
        return lines


def look_back(model: AnyGPT2, heads: list, *, batch_size: int = 32, rep: int = 3, seed: int = 0) -> LookBack:
    """Measure `heads`' previous-token attention per query position on sequences that fill the context, a few
    sequences per forward (`ATTENTION_BYTES`: at GPT-2-small's 1024 positions one sequence's attention weights,
    all layers, take 600 MB)."""
    heads = check_heads(heads, (model.config.n_layer, model.config.n_head))
    seg_len = model.config.n_positions // rep
    ids = repeated_tokens(batch_size, seg_len, model.config.vocab_size, rep, seed)
    T = ids.shape[1]
    per_sequence = model.config.n_layer * model.config.n_head * T * T * 4
    chunk = max(1, ATTENTION_BYTES // per_sequence)
    totals = np.zeros((len(heads), T))
    for start in range(0, batch_size, chunk):
        attn = attention_patterns(model, ids[start : start + chunk])  # (n_layer, chunk, n_head, T, T)
        for i, (layer, head) in enumerate(heads):
            totals[i, 1:] += attn[layer, :, head].diagonal(offset=-1, dim1=-2, dim2=-1).sum(0).double().numpy()
    previous = totals / batch_size
    previous[:, 0] = np.nan
    return LookBack(heads, previous, seg_len, rep, batch_size)
