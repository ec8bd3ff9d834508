"""Which heads count: the one rule, `max(fraction x best score of the kind, uniform baseline + margin)`.

A head counts as a head of a kind ("induction" or "shifting") when its score of that kind reaches that bar: near
the best head of its kind, and clearly above what a head that attends uniformly to every earlier token scores
(`HeadScores.uniform`). `MARGIN` is in attention weight: 0.1 is a tenth of a query's attention on the right token
beyond uniform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ihlib.model.errors import IHLibError

if TYPE_CHECKING:
    from ihlib.heads.scoring import HeadScores
from ihlib.model.head_ids import HEAD_KINDS, check_k, check_kind, rank_heads

FRACTION = 0.5  # a head counts when it scores at least this share of the best head of its kind ...


MARGIN = 0.1  # ... and at least this much attention weight above the uniform-attention head


def draw_head_pairs(
    shape: tuple[int, int], exclude: list, num_samp: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Draw `num_samp` pairs of distinct heads `(N, 2, 2)` (`[layer, head]`), avoiding `exclude` when possible.

    Returns the pairs and a description of the pool they came from.
    """
    n_layer, n_head = int(shape[0]), int(shape[1])
    everything = np.arange(n_layer * n_head)
    pool = np.setdiff1d(everything, [l * n_head + h for l, h in exclude])
    label = f"all {pool.size} heads outside the {everything.size - pool.size} heads under test"
    if pool.size < 2:
        pool, label = everything, f"all {everything.size} heads (too few heads outside those under test)"
    if pool.size < 2:
        raise IHLibError("Random-head baselines need a model with at least 2 heads.")
    first = rng.integers(pool.size, size=num_samp)
    second = (first + 1 + rng.integers(pool.size - 1, size=num_samp)) % pool.size
    flat = pool[np.stack([first, second], axis=1)]
    return np.stack([flat // n_head, flat % n_head], axis=-1), label


def ranking(scores: HeadScores, kind: str) -> list[list[int]]:
    """Return every head, best `kind` score first."""
    return rank_heads(getattr(scores, check_kind(kind)))


def count_threshold(scores: HeadScores, kind: str, *, fraction: float = FRACTION, margin: float = MARGIN) -> float:
    """Return the bar a `kind` head's score must reach: `max(fraction x best, uniform baseline + margin)`."""
    values = getattr(scores, check_kind(kind))
    if not 0 < fraction <= 1:
        raise IHLibError(f"fraction must be in (0, 1], got {fraction}.")
    if margin < 0:
        raise IHLibError(f"margin must be at least 0 (attention weight above uniform), got {margin}.")
    return float(max(fraction * values.max(), scores.uniform[kind] + margin))


def counting_heads(
    scores: HeadScores, kind: str, *, fraction: float = FRACTION, margin: float = MARGIN
) -> list[list[int]]:
    """Return the heads that count as `kind` heads (score >= `count_threshold`), best first: the one selection rule."""
    threshold = count_threshold(scores, kind, fraction=fraction, margin=margin)
    values = getattr(scores, kind)
    return [[layer, head] for layer, head in ranking(scores, kind) if values[layer, head] >= threshold]


def top_heads(
    scores: HeadScores, kind: str, K: int | None = None, *, fraction: float = FRACTION, margin: float = MARGIN
) -> list[list[int]]:
    """Return the top `K` heads of the `kind` ranking, or the `counting_heads` when K is None."""
    if K is None:
        return counting_heads(scores, kind, fraction=fraction, margin=margin)
    heads = ranking(scores, kind)
    return heads[: check_k(K, len(heads))]


def head_role(scores: HeadScores, layer: int, head: int, *, fraction: float = FRACTION, margin: float = MARGIN) -> str:
    """Return "induction head", "shifting head", "both" or "neither" by `count_threshold` of each kind."""
    is_kind = tuple(
        bool(getattr(scores, kind)[layer, head] >= count_threshold(scores, kind, fraction=fraction, margin=margin))
        for kind in HEAD_KINDS
    )
    roles = {(True, False): "induction head", (False, True): "shifting head", (True, True): "both"}
    return roles.get(is_kind, "neither")
