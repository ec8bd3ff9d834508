"""Measure the route analysis on the embedded models and print it: path-patching conditions, route shares, cost,
the empirical token circuits, and claim 1 on the weights and on the weights through MLP0 (issue 21).

Run from the repository root: `python scripts/measure_routes.py [ihlib-language ihlib-copy]` (1 thread, ~1 min).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch

from ihlib import head_scores, head_weights, load_model
from ihlib.claims.diagonal import diagonal_controls, judge_diagonal
from ihlib.core.effective_circuits import empirical_token_circuits
from ihlib.core.mlp_route import mlp_route_weights
from ihlib.heads.selection import counting_heads, top_heads
from ihlib.model.batches import repeated_tokens
from ihlib.report.route_tables import route_conditions_table, route_shares_table
from ihlib.tools.route_shares import route_analysis

ROUTE_WEIGHTS = {  # label: (key route, query through MLP0)
    "weights (the seed's)": ("direct", False),
    "keys through MLP0 only": ("mlp", False),
    "queries through MLP0, keys direct": ("direct", True),
    "queries and keys through MLP0": ("mlp", True),
    "queries through MLP0, keys both ways": ("both", True),
}


def measure(name: str) -> None:
    """Print every measurement of the route analysis for the embedded model `name`."""
    model = load_model(name, device="cpu")
    scores = head_scores(model)
    IH, SH = top_heads(scores, "induction", None), top_heads(scores, "shifting", None)
    print(f"== {name}: IHs {IH}, shifting heads {SH}")
    start = time.perf_counter()
    routes = route_analysis(model, IH, SH)
    print(f"route analysis: {routes.forwards} batched forwards, {time.perf_counter() - start:.1f} s")
    print(route_conditions_table(routes).to_string())
    print(route_shares_table(routes).to_string())
    ids = repeated_tokens(200, 20, model.config.vocab_size, rep=3, seed=0)
    circuits = empirical_token_circuits(model, IH, ids)
    print(
        "empirical token circuit, IHs: z", np.round(circuits.z, 2).tolist(), "wins", np.round(circuits.wins, 2).tolist()
    )
    print(
        "  key-permutation null, 95th percentile of z (largest over IHs):",
        round(float(np.percentile(circuits.null_z, 95, axis=1).max()), 3),
    )
    others = [[l, h] for l in sorted({l for l, _ in IH}) for h in range(model.config.n_head) if [l, h] not in IH + SH]
    if others:
        control = empirical_token_circuits(model, others, ids)
        print(
            "  same-layer heads of neither kind: z",
            np.round(control.z, 2).tolist(),
            "wins",
            np.round(control.wins, 2).tolist(),
        )
    exclude = counting_heads(scores, "induction") + counting_heads(scores, "shifting")
    W_all, W_E = head_weights(model), model.transformer.wte.weight.detach()
    for label, (key_route, query) in ROUTE_WEIGHTS.items():
        weights = mlp_route_weights(model, W_all, ids, key_route=key_route, query_through_mlp=query).W_all
        judgement = judge_diagonal(diagonal_controls(weights, IH, SH, exclude=exclude, W_E=W_E, n_boot=500))
        effects = {
            k: f"{e.difference:+.2f} [{e.low:+.2f}, {e.high:+.2f}] d={e.standardized:.1f}"
            for k, e in judgement.effects.items()
        }
        listed = next(iter(judgement.effects.values())).listed_mean
        print(f"claim 1 on {label}: {judgement.label}; listed z {listed:.2f}; effects {effects}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    pd.set_option("display.width", 200)
    for model_name in sys.argv[1:] or ["ihlib-language", "ihlib-copy"]:
        measure(model_name)
