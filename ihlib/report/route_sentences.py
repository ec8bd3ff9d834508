"""The words of the route analysis: one sentence per route from its shares, the scope of the weights read along the
route that carries copying, and a claim's verdict on that route, marked as not the seed's test (or as the same
test when the direct write carries most)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ihlib.claims.verdicts import Verdict
from ihlib.core.mlp_route import RouteWeights
from ihlib.core.stats import Interval
from ihlib.report.formatting import format_interval
from ihlib.report.sentences import Paragraph
from ihlib.tools.route_shares import CONDITIONS, CarryingRoute, RouteAnalysis

SAME_TEST_SCOPE = "route that carries copying: the direct weight path (the same test as the seed's)"
ROUTE_WORDS = ("The shifting heads' direct write", "Their part of the MLPs", "Neither route (the rest)")


def _induction_range(analysis: RouteAnalysis, part: int) -> str:
    """The IHs' shares of one part as "0.05 to 0.21 of the IHs' induction" (one IH: its share with interval)."""
    means = analysis.induction_shares[:, part, 0]
    if len(means) == 1:
        return f"{format_interval(analysis.share(0, part), signed=True)} of the IH's induction"
    return f"{np.nanmin(means):+.2f} to {np.nanmax(means):+.2f} of the IHs' induction (one share per IH)"


def route_summary(analysis: RouteAnalysis, carrying: CarryingRoute) -> Paragraph:
    """One sentence per route (its share of copying with 95% interval, the range of its shares over the IHs), what
    each removal costs alone, which route carries more of copying, and the cost in forwards."""
    sentences = [
        f"{words} carries {format_interval(analysis.copying_share(part), signed=True)} of copying and "
        f"{_induction_range(analysis, part)}."
        for part, words in enumerate(ROUTE_WORDS)
    ]
    alone = ", ".join(
        f"{name} {format_interval(Interval(*analysis.copying_drops[j]), signed=True)}"
        for j, name in enumerate(CONDITIONS)
    )
    where = "the direct write" if carrying.is_direct else f"the MLPs (MLP{carrying.mlp_layer} the most on its own)"
    batch = analysis.together.settings.batch_size
    return Paragraph(
        "**Which route.** "
        + " ".join(sentences)
        + f" Share of copying lost by each removal alone: {alone}. More of copying goes through {where}. "
        f"Cost: {analysis.forwards} batched forwards of {batch} sequences, weights untouched."
    )


def route_scope(weights: RouteWeights) -> str:
    """The scope of a verdict on `weights`: the direct weight path (same test), or the route through an MLP."""
    if weights.key_route == "direct" and not weights.query_through_mlp:
        return SAME_TEST_SCOPE
    layer = weights.mlp_layer
    keys = {"direct": "keys from W_ov", "mlp": f"keys from J{layer} W_ov", "both": f"keys from (I + J{layer}) W_ov"}
    queries = f", queries through (I + J{layer})" if weights.query_through_mlp else ""
    return (
        f"weights through MLP{layer} (averaged Jacobian J{layer}: {keys[weights.key_route]}{queries}; "
        f"no layer norm of the IHs, no biases)"
    )


def route_verdict(verdict: Verdict, carrying: CarryingRoute) -> Verdict:
    """`verdict` (judged on the weights of the carrying route, same statistic and controls as the direct test) with
    a first sentence saying which route it reads and whether it is the seed's test."""
    shares = (
        f"the shifting heads' direct write carries {format_interval(carrying.direct, signed=True)} of copying, "
        f"their part of the MLPs {format_interval(carrying.through_mlps, signed=True)}"
    )
    if carrying.is_direct:
        lead = (
            f"On this model {shares}: the route that carries the information is the direct weight path, so this "
            "is the same test as the direct-weight-path verdict, repeated under the route's scope."
        )
        caveat = verdict.caveat
    else:
        lead = (
            f"Not the seed's test: on this model {shares}, so the weights are read along MLP{carrying.mlp_layer} "
            "(its Jacobian averaged over the copying batch), with the same statistic, controls and rule as the "
            "direct test."
        )
        caveat = "a linearisation of the MLP averaged over one batch, not the seed's weight product; " + verdict.caveat
    return replace(verdict, text=f"{lead} {verdict.text}", caveat=caveat)
