"""Claim 3's control conditions, and two facts that decide whether a shuffle could fail at all: how alike the
edited heads of one layer attend, and how many distinct exchanges the repetitions used.

Heads of one layer read the same residual stream, and the layer writes the sum of what its heads write. When the
heads exchanged attend alike (attention patterns `A_h (batch, seq, seq)` nearly equal), exchanging their QK leaves
every head looking where it looked, and exchanging their OV leaves the sum unchanged: the shuffle cannot fail,
whatever their weights. Alike is measured by the total variation `0.5 * sum_j |A_h[i, j] - A_g[i, j]|` between two
heads' attention rows at the scored query positions, averaged over the copying batch; `ALIKE` is its bar.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ihlib.core.edits import cross_layer_pairs, cross_layer_possible, exchange_pairs
from ihlib.heads.scoring import attention_patterns
from ihlib.model.head_ids import all_heads
from ihlib.model.loading import AnyGPT2

CONTROLS = (
    "original",
    "shuffle",
    "cross-layer shuffle",
    "other heads of these layers, shuffled",
    "random heads of these layers",
    "random heads",
)
ALIKE = 0.1  # heads whose attention rows differ by at most this total variation (mean) attend alike


def control_pools(model: AnyGPT2, heads: list, exclude: list) -> tuple[list, dict[str, str]]:
    """The other heads of the edited heads' layers, and why each control that cannot run is absent."""
    layers = {h[0] for h in heads}
    shape = (model.config.n_layer, model.config.n_head)
    others = [h for h in all_heads(shape) if h[0] in layers and h not in heads and h not in exclude]
    where = f"layer(s) {', '.join(map(str, sorted(layers)))}"
    absent = {}
    if not cross_layer_possible(heads):
        absent["cross-layer shuffle"] = (
            f"the edited heads all sit in {where}"
            if len(layers) == 1
            else "one layer holds more than half of the edited heads, so no head can avoid its own layer"
        )
    if len(others) < 2:
        absent["other heads of these layers, shuffled"] = f"{where} hold(s) {len(others)} head(s) of another kind"
    if not others:
        absent["random heads of these layers"] = f"{where} hold(s) no head of another kind"
    return others, absent


def control_pairs(model: AnyGPT2, condition: str, heads: list, others: list, rng: np.random.Generator) -> list:
    """The exchanges `[[target, source], ...]` of one control condition for one repetition."""
    if condition == "original":
        return []
    if condition == "shuffle":
        return exchange_pairs(model, heads, "shuffle", rng)
    if condition == "cross-layer shuffle":
        return cross_layer_pairs(heads, rng)
    if condition == "other heads of these layers, shuffled":
        return exchange_pairs(model, others, "shuffle", rng)
    if condition == "random heads of these layers":
        with warnings.catch_warnings():  # fewer other heads than edited ones: drawn with replacement, as documented
            warnings.simplefilter("ignore")
            return exchange_pairs(model, heads, "random baseline", rng, others)
    return exchange_pairs(model, heads, "random baseline", rng)


def attention_distance(patterns: torch.Tensor, a: int, b: int, positions: np.ndarray) -> float:
    """Mean total variation between heads `a` and `b` of one layer: `patterns (batch, n_head, seq, seq)`, rows at
    query `positions`."""
    rows = patterns[:, :, positions]
    return float(0.5 * (rows[:, a] - rows[:, b]).abs().sum(-1).mean())


def same_layer_distances(model: AnyGPT2, heads: list, ids: torch.Tensor, positions: np.ndarray) -> dict[str, float]:
    """For each pair of edited heads that share a layer: "L1H0-L1H2" -> mean total variation of their attention on
    the sequences `ids (batch, seq)` at the scored query `positions`."""
    patterns = attention_patterns(model, ids)
    distances = {}
    for i, (layer, a) in enumerate(heads):
        for other_layer, b in heads[i + 1 :]:
            if other_layer == layer:
                name = f"L{layer}H{a}-L{layer}H{b}"
                distances[name] = attention_distance(patterns[layer], a, b, positions)
    return distances


def derangements(n: int) -> int:
    """The number of permutations of `n` items that move every item (1 for n = 2, 2 for n = 3, 9 for n = 4)."""
    return round(math.factorial(n) / math.e) if n > 0 else 1


def distinct_exchanges(pairs: list[list]) -> int:
    """How many different exchanges `[[target, source], ...]` the repetitions `pairs` used."""
    return len({tuple(sorted((tuple(t), tuple(s)) for t, s in used)) for used in pairs})
