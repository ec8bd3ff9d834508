"""Statistics shared by the claims: t-intervals over repetitions, percentiles in a baseline, binomial tails."""

from __future__ import annotations

import functools
import math

import numpy as np

CHANCE_ABOVE_Q95 = 0.05  # share of baseline-like values above the baseline's 95th percentile


@functools.lru_cache(maxsize=64)
def t_quantile(q: float, df: int) -> float:
    """Return the `q` quantile of Student's t with `df` degrees of freedom (numerical; error below 1e-4)."""
    # With t = sqrt(df) tan(theta), theta has density proportional to cos(theta)^(df - 1) on (-pi/2, pi/2).
    theta = np.linspace(-np.pi / 2, np.pi / 2, 200_001)
    density = np.cos(theta) ** (df - 1)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return float(np.sqrt(df) * np.tan(np.interp(q, cdf / cdf[-1], theta)))


def mean_ci(values: np.ndarray, axis: int = -1, level: float = 0.95) -> dict[str, np.ndarray]:
    """Return `mean`, `low`, `high` of `values` along `axis`: the mean and its Student t-interval (NaN for n = 1)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return {"mean": mean, "low": nan, "high": nan}
    half = t_quantile(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def at(stats: dict, i: int) -> dict[str, float]:
    """Return entry `i` of a `{mean, low, high}` dict of arrays as floats."""
    return {key: float(np.asarray(value)[i]) for key, value in stats.items()}


def reading(change: dict, tolerance: float) -> str:
    """Read an error change `{mean, low, high}`: "intact" (high < tolerance), "breaks" (low > tolerance), "unclear"."""
    if change["high"] < tolerance:
        return "intact"
    if change["low"] > tolerance:
        return "breaks"
    return "unclear"


def percentile_of(scores: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Percentage of `baseline (..., N)` at or below each score in `scores (..., *S)`; leading dims must match."""
    extra = scores.ndim - baseline.ndim + 1
    base = baseline.reshape(baseline.shape[:-1] + (1,) * extra + baseline.shape[-1:])
    return 100.0 * (base <= scores[..., None]).mean(-1)


def binomial_tail(k: int, n: int, p: float) -> float:
    """Return `P(Binomial(n, p) >= k)`: the chance of `k` or more successes in `n` independent trials."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)))
