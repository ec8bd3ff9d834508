"""Tables of the route analysis: the path-patching conditions (induction per IH layer, copy error) and the route
shares per IH and of copying, each number with its 95% interval (`ihlib.report.formatting.format_interval`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ihlib.core.stats import Interval, mean_ci
from ihlib.model.head_ids import head_label
from ihlib.report.formatting import format_interval
from ihlib.tools.route_shares import PARTS, RouteAnalysis


def route_conditions_table(analysis: RouteAnalysis) -> pd.DataFrame:
    """One row per condition (every IH's keys edited at once): each IH layer's mean induction score and the
    top-1 copy error, with 95% t-intervals over sequences."""
    result = analysis.together
    layers = sorted({layer for layer, _ in result.receivers})
    rows = []
    for index, name in enumerate(result.names):
        row = {"removed from the IHs' keys": name}
        for layer in layers:
            members = [j for j, (l, _) in enumerate(result.receivers) if l == layer]
            per_sequence = result.induction[index, members].mean(0)  # (batch,)
            row[f"layer-{layer} IHs' induction"] = format_interval(Interval.of(mean_ci(per_sequence)))
        row["top-1 copy error"] = format_interval(result.error_interval(index))
        rows.append(row)
    return pd.DataFrame(rows).set_index("removed from the IHs' keys")


def route_shares_table(analysis: RouteAnalysis) -> pd.DataFrame:
    """One row per IH and one for copying: the share each part (`PARTS`) carries, with its 95% interval."""
    labels = [head_label(*pair) for pair in analysis.IH_list] + ["copying"]
    shares = np.concatenate([analysis.induction_shares, analysis.copying_shares[None]])
    rows = [
        {part: format_interval(Interval(*shares[i, j]), signed=True) for j, part in enumerate(PARTS)}
        for i in range(len(labels))
    ]
    return pd.DataFrame(rows, index=pd.Index(labels, name="share of"))
