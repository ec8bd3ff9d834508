"""Heads as `[layer, head]` pairs: the two head kinds, validation against a model's shape, labels, ranking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from ihlib.model.errors import HeadError, IHLibError
from ihlib.model.validation import is_whole

if TYPE_CHECKING:
    pass


HeadKind = Literal["induction", "shifting"]


HEAD_KINDS: tuple[HeadKind, ...] = ("induction", "shifting")


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
    if not is_whole(value):
        raise HeadError(f"{name} contains the {what} {value!r}: {what}s must be integers in 0..{size - 1}.")
    if not 0 <= int(value) < size:
        raise HeadError(f"{name} contains {what} {value}: this model has {what}s 0..{size - 1}.")
    return int(value)


def check_heads(
    heads: object, shape: tuple[int, int], *, name: str = "heads", nonempty: bool = True
) -> list[list[int]]:
    """Return `heads` as distinct `[layer, head]` int pairs of a model with `shape = (n_layer, n_head)`, or raise."""
    if heads is None or isinstance(heads, str):
        raise HeadError(f"{name} must be a list of [layer, head] pairs, got {heads!r}.")
    items = np.asarray(heads).tolist() if isinstance(heads, np.ndarray) else list(heads)
    if nonempty and not items:
        raise HeadError(f"{name} is empty: pass at least one [layer, head] pair.")
    pairs: list[list[int]] = []
    for item in items:
        if isinstance(item, str) or not hasattr(item, "__len__") or len(item) != 2:
            raise HeadError(f"Each entry of {name} must be [layer, head]; got {item!r}.")
        pair = [_index(item[0], name, "layer", shape[0]), _index(item[1], name, "head", shape[1])]
        if pair in pairs:
            raise HeadError(f"{name} lists {pair} twice; each head may appear once.")
        pairs.append(pair)
    return pairs


def check_k(K: int, n_available: int, what: str = "K") -> int:
    """Return `K` as int, or raise naming the allowed range `1..n_available`."""
    if not is_whole(K) or not 1 <= int(K) <= n_available:
        raise HeadError(f"{what}={K!r} is out of range: choose an integer in 1..{n_available} (the number of heads).")
    return int(K)


def all_heads(shape: tuple[int, int]) -> list[list[int]]:
    """Return every `[layer, head]` of a model with `shape = (n_layer, n_head)`, layer by layer."""
    return [[layer, head] for layer in range(shape[0]) for head in range(shape[1])]


def rank_heads(scores: np.ndarray) -> list[list[int]]:
    """Return all heads as `[layer, head]` (plain ints) sorted by `scores` `(n_layer, n_head)`, best first."""
    n_head = scores.shape[1]
    order = np.argsort(-scores, axis=None, kind="stable")
    return [[int(i // n_head), int(i % n_head)] for i in order]
