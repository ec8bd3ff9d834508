"""Tables of the course's standard measures: the in-context learning score per condition and copying with each
layer's induction heads ablated; intervals are `Interval`s for `reading_table`."""

from __future__ import annotations

import pandas as pd

from ihlib.core.stats import Interval
from ihlib.tools.ablation import AblationCopying
from ihlib.tools.in_context import ICLScore


def condition_label(name: str) -> str:
    """A condition's name for a table: "intact" for the condition without ablated heads ("none")."""
    return "intact" if name == "none" else name


def icl_table(scores: dict[str, ICLScore]) -> pd.DataFrame:
    """One row per condition (the dict's keys): the ICL score (late minus early loss, nats) as an `Interval` (95%
    bootstrap over documents; signed) and the mean loss at the early and late query positions (inclusive ranges)."""
    rows = [
        {
            "condition": condition_label(name),
            "ICL score": score.score,
            f"loss at {score.early[0]}-{score.early[1] - 1}": score.early_loss.mean,
            f"loss at {score.late[0]}-{score.late[1] - 1}": score.late_loss.mean,
        }
        for name, score in scores.items()
    ]
    return pd.DataFrame(rows)


def layer_ablation_table(copying: AblationCopying) -> pd.DataFrame:
    """One row per condition of `copying` (e.g. "intact", "zero layer 2 (4 heads)"): top-1 copying error as an
    `Interval` (95% bootstrap over sequences) and P(correct), its mean."""
    return pd.DataFrame(
        [
            {
                "condition": condition_label(name),
                "top-1 error": Interval(float(mean), float(low), float(high)),
                "P(correct)": float(prob),
            }
            for name, mean, low, high, prob in zip(
                copying.names, copying.error, copying.error_low, copying.error_high, copying.prob, strict=True
            )
        ]
    )
