"""Heads as `[layer, head]` pairs: validate, label, rank, sample, and the one rule for which heads count.

A head counts as a head of a kind ("induction" or "shifting") when its score of that kind is at least
`max(fraction x best score of that kind, uniform baseline + MARGIN)`: near the best head of its kind, and
clearly above what a head that attends uniformly to every earlier token scores (`HeadScores.uniform`).
`MARGIN` is in attention weight: 0.1 is a tenth of a query's attention on the right token beyond uniform.
"""

from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING, Literal

import numpy as np

from ihlib.errors import IHLibError

if TYPE_CHECKING:
    from ihlib.scoring import HeadScores

HeadKind = Literal["induction", "shifting"]
HEAD_KINDS: tuple[HeadKind, ...] = ("induction", "shifting")
FRACTION = 0.5  # a head counts when it scores at least this share of the best head of its kind ...
MARGIN = 0.1  # ... and at least this much attention weight above the uniform-attention head


def check_kind(kind: str) -> HeadKind:
    """Return `kind` if it is a head kind, else raise naming the kinds."""
    if kind not in HEAD_KINDS:
        raise IHLibError(f"kind must be one of {HEAD_KINDS}, got {kind!r}.")
    return kind


def head_label(layer: int, head: int) -> str:
    """Return the label `L{layer}H{head}` used on every axis and in every table."""
    return f"L{int(layer)}H{int(head)}"


def head_labels(heads: list) -> list[str]:
    """Return `L{l}H{h}` labels for a list of `[layer, head]` pairs."""
    return [head_label(l, h) for l, h in heads]


def _index(value: object, name: str, what: str, size: int) -> int:
    """Return `value` as an int in `0..size-1`, or raise naming `name`, the value and the range."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise IHLibError(f"{name} contains the {what} {value!r}: {what}s must be integers in 0..{size - 1}.")
    if not 0 <= int(value) < size:
        raise IHLibError(f"{name} contains {what} {value}: this model has {what}s 0..{size - 1}.")
    return int(value)


def check_heads(
    heads: object, shape: tuple[int, int], *, name: str = "heads", nonempty: bool = True
) -> list[list[int]]:
    """Return `heads` as distinct `[layer, head]` int pairs of a model with `shape = (n_layer, n_head)`, or raise."""
    if heads is None or isinstance(heads, str):
        raise IHLibError(f"{name} must be a list of [layer, head] pairs, got {heads!r}.")
    items = np.asarray(heads).tolist() if isinstance(heads, np.ndarray) else list(heads)
    if nonempty and not items:
        raise IHLibError(f"{name} is empty: pass at least one [layer, head] pair.")
    pairs: list[list[int]] = []
    for item in items:
        if isinstance(item, str) or not hasattr(item, "__len__") or len(item) != 2:
            raise IHLibError(f"Each entry of {name} must be [layer, head]; got {item!r}.")
        pair = [_index(item[0], name, "layer", shape[0]), _index(item[1], name, "head", shape[1])]
        if pair in pairs:
            raise IHLibError(f"{name} lists {pair} twice; each head may appear once.")
        pairs.append(pair)
    return pairs


def check_k(K: int, n_available: int, what: str = "K") -> int:
    """Return `K` as int, or raise naming the allowed range `1..n_available`."""
    if isinstance(K, bool) or not isinstance(K, Integral) or not 1 <= int(K) <= n_available:
        raise IHLibError(f"{what}={K!r} is out of range: choose an integer in 1..{n_available} (the number of heads).")
    return int(K)


def all_heads(shape: tuple[int, int]) -> list[list[int]]:
    """Return every `[layer, head]` of a model with `shape = (n_layer, n_head)`, layer by layer."""
    return [[layer, head] for layer in range(shape[0]) for head in range(shape[1])]


def rank_heads(scores: np.ndarray) -> list[list[int]]:
    """Return all heads as `[layer, head]` (plain ints) sorted by `scores` `(n_layer, n_head)`, best first."""
    n_head = scores.shape[1]
    order = np.argsort(-scores, axis=None, kind="stable")
    return [[int(i // n_head), int(i % n_head)] for i in order]


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
