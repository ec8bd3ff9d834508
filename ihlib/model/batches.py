"""Batches of repeated random tokens and the positions where copying is scored."""

from __future__ import annotations

import numpy as np
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.validation import integer, seed_value


def repeated_tokens(
    batch_size: int,
    seg_len: int,
    vocab_size: int,
    rep: int = 3,
    seed: int | None = 0,
    bos_token_id: int | None = None,
) -> torch.Tensor:
    """Return `(batch_size, [1 +] rep * seg_len)` ids: a random segment repeated `rep` times, optional BOS first."""
    batch_size, seg_len, rep = (
        integer(value, name, low=low)
        for name, value, low in (("batch_size", batch_size, 1), ("seg_len", seg_len, 2), ("rep", rep, 2))
    )
    vocab_size = integer(vocab_size, "vocab_size", low=2)
    if bos_token_id is not None:
        bos_token_id = integer(bos_token_id, "bos_token_id", low=0)
    rng = np.random.default_rng(None if seed is None else seed_value(seed))
    segments = rng.integers(0, vocab_size, size=(batch_size, seg_len))
    ids = torch.from_numpy(np.tile(segments, (1, rep))).long()
    if bos_token_id is not None:
        ids = torch.cat([torch.full((batch_size, 1), int(bos_token_id)), ids], dim=1)
    return ids


def copy_positions(seg_len: int, rep: int = 3, burn_in: int = 2, bos: bool = False) -> np.ndarray:
    """Return the query positions `t` whose next token `t + 1` repeats an earlier one, after a burn-in.

    The first predictable position is the first token of the second segment; `burn_in` skips
    that many more. Positions index the sequence including the BOS token when `bos` is True.
    """
    burn_in = integer(burn_in, "burn_in", low=0)
    offset = int(bos)
    first, last = offset + seg_len + burn_in, offset + rep * seg_len - 2
    if first > last:
        raise IHLibError(f"burn_in={burn_in} leaves no scored position for seg_len={seg_len}, rep={rep}.")
    return np.arange(first, last + 1)
