"""How numbers read on the pages: a mean with its interval on one line."""

from __future__ import annotations

import math

from ihlib.core.stats import Interval


def format_interval(value: Interval, signed: bool = False) -> str:
    """Format as "0.02 [0.01, 0.03]": a rate, its interval clipped to [0, 1]; or, when `signed`, a change as
    "+0.02 [-0.01, +0.05]". Values that round to zero print without a minus sign."""
    low, high = (value.low, value.high) if signed else (max(value.low, 0.0), min(value.high, 1.0))

    def fmt(number: float) -> str:
        return f"{round(number, 2) + 0.0:{'+' if signed else ''}.2f}"

    if math.isnan(value.low):
        return fmt(value.mean) + " (one repetition: no interval)"
    return f"{fmt(value.mean)} [{fmt(low)}, {fmt(high)}]"
