"""The words of the route analysis: one sentence per route from its shares, the scope of the weights read along the
route that carries copying, and a claim's verdict on that route, marked as not the seed's test (or as the same
test when the direct write carries most)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ihlib.claims.verdicts import Verdict
from ihlib.core.mlp_route import RouteWeights
from ihlib.core.stats import Interval
from ihlib.model.loading import AnyGPT2, model_label
from ihlib.report.formatting import format_interval
from ihlib.report.sentences import Paragraph
from ihlib.tools.route_shares import (
    CONDITIONS,
    DEFAULT_SETTINGS,
    CarryingRoute,
    RouteAnalysis,
    carrying_route,
    route_analysis,
)
from ihlib.tools.routes import PatchSettings

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


def _alone_text(carrying: CarryingRoute) -> str:
    """The copying lost by each removal alone, as a parenthesis that shows redundant routes ("" without it)."""
    if not carrying.alone:
        return ""
    direct, through, both = (format_interval(value, signed=True) for value in carrying.alone)
    return f" (copying lost when removed alone: direct {direct}, through the MLPs {through}; both together {both})"


def route_verdict(verdict: Verdict, carrying: CarryingRoute) -> Verdict:
    """`verdict` (judged on the weights of the carrying route, same statistic and controls as the direct test) with
    a first sentence saying which route it reads and whether it is the seed's test."""
    shares = (
        f"the shifting heads' direct write carries {format_interval(carrying.direct, signed=True)} of copying, "
        f"their part of the MLPs {format_interval(carrying.through_mlps, signed=True)}{_alone_text(carrying)}"
    )
    if carrying.is_direct:
        lead = (
            f"On this model {shares}: the route that carries the information is the direct weight path, so this "
            "is the same test as the direct-weight-path verdict, repeated under the route's scope."
        )
        caveat = verdict.caveat
        summary = f"The direct write carries the previous token, so this repeats the direct test: {_lower(verdict)}"
    else:
        lead = (
            f"Not the seed's test: on this model {shares}, so the weights are read along MLP{carrying.mlp_layer} "
            "(its Jacobian averaged over the copying batch), with the same statistic, controls and rule as the "
            "direct test."
        )
        caveat = "a linearisation of the MLP averaged over one batch, not the seed's weight product; " + verdict.caveat
        through = format_interval(carrying.through_mlps, signed=True)
        summary = (
            f"Read along MLP{carrying.mlp_layer}, which carries {through} of copying "
            f"(the direct write {format_interval(carrying.direct, signed=True)}): {_lower(verdict)}"
        )
    return replace(verdict, text=f"{lead} {verdict.text}", caveat=caveat, summary=summary)


def _lower(verdict: Verdict) -> str:
    """The verdict's sentence with a lower-case first letter, to follow a colon."""
    return verdict.sentence[:1].lower() + verdict.sentence[1:]


def _pairs(heads: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Head ids as a tuple of `(layer, head)` tuples."""
    return tuple((int(layer), int(head)) for layer, head in heads)


def saved_carrying_route(
    folder: str | Path, model: str, IH_list: Sequence[Sequence[int]], Shifting_list: Sequence[Sequence[int]]
) -> CarryingRoute | None:
    """The `CarryingRoute` that chapter 1 saved in `folder` (`carrying_route.json`) for `model` and these heads;
    None when there is none, or when it was saved for another model or other heads."""
    path = Path(folder) / f"{CarryingRoute.name}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    heads = (_pairs(record.get("IH_list", [])), _pairs(record.get("Shifting_list", [])))
    if record.get("model") != model or heads != (_pairs(IH_list), _pairs(Shifting_list)):
        return None
    shares = {key: Interval(**record[key]) for key in ("direct", "through_mlps")}
    alone = tuple(Interval(**value) for value in record.get("alone", []))
    layer = int(record["mlp_layer"])
    return CarryingRoute(
        model, record["route"], **shares, mlp_layer=layer, IH_list=heads[0], Shifting_list=heads[1], alone=alone
    )


def carrying_route_of(
    folder: str | Path,
    model: AnyGPT2,
    IH_list: Sequence[Sequence[int]],
    Shifting_list: Sequence[Sequence[int]],
    *,
    settings: PatchSettings = DEFAULT_SETTINGS,
    n_boot: int = 1000,
) -> CarryingRoute:
    """The carrying route chapter 1 saved in `folder` for this model and heads, else measured here
    (`route_analysis`: `(1 + n_conditions) * (1 + n_IH_layers)` forwards)."""
    saved = saved_carrying_route(folder, model_label(model), IH_list, Shifting_list)
    if saved is not None:
        return saved
    return carrying_route(route_analysis(model, IH_list, Shifting_list, settings=settings, n_boot=n_boot))


def projection_route_reading(carrying: CarryingRoute) -> Paragraph:
    """Chapter 4's projection read in the light of the route shares: an edit of a shifting head's `W_o` cuts the
    direct write and every MLP route downstream at once, so it cannot tell the routes apart."""
    shares = (
        f"the shifting heads' direct write carries {format_interval(carrying.direct, signed=True)} of copying and "
        f"their part of the MLPs {format_interval(carrying.through_mlps, signed=True)} (chapter 1)"
        f"{_alone_text(carrying)}"
    )
    where = (
        "most of copying arrives by the direct write, the route the weight products of claims 1 and 2 describe"
        if carrying.is_direct
        else f"most of copying arrives through the MLPs (MLP{carrying.mlp_layer} the most), a route the seed's weight "
        "product W_qk W_ov leaves out"
    )
    return Paragraph(
        f"**Which route the OV edits cut.** On {carrying.model} {shares}: {where}. An OV edit changes what the "
        "shifting heads write for every later reader, so it removes both routes at once; whether it breaks copying "
        "says whether the directions it removes carry the previous token, not by which route. The QK edits act only "
        "on the IHs' keys and read the previous token from wherever it arrives."
    )
