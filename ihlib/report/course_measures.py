"""Tables of the course's standard measures: the in-context learning score per condition and copying with each
layer's induction heads ablated; cells are `Interval`s for `reading_table`."""

from __future__ import annotations

import pandas as pd

from ihlib.core.stats import Interval
from ihlib.tools.ablation import AblationCopying
from ihlib.tools.in_context import ICLScore


def icl_table(scores: dict[str, ICLScore]) -> pd.DataFrame:
    """One row per condition (the dict's keys): the ICL score (late minus early loss, nats) and both losses, each
    an `Interval` (mean, 95% bootstrap over documents)."""
    rows = [
        {
            "condition": name,
            "ICL score": score.score,
            f"loss at {score.early[0]}-{score.early[1]}": score.early_loss,
            f"loss at {score.late[0]}-{score.late[1]}": score.late_loss,
        }
        for name, score in scores.items()
    ]
    return pd.DataFrame(rows)


def layer_ablation_table(copying: AblationCopying) -> pd.DataFrame:
    """One row per condition of `copying` (e.g. "intact", "zero layer 2 (4 heads)"): top-1 copying error as an
    `Interval` (95% bootstrap over sequences) and its change from the intact model (the first condition)."""
    intact = float(copying.error[0])
    return pd.DataFrame(
        [
            {
                "condition": name,
                "top-1 error": Interval(float(mean), float(low), float(high)),
                "change from intact": float(mean) - intact,
            }
            for name, mean, low, high in zip(
                copying.names, copying.error, copying.error_low, copying.error_high, strict=True
            )
        ]
    )
