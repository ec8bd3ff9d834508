"""Statistics shared by the claims: t-intervals over repetitions, percentiles in a baseline, binomial tails, and
effects of listed head pairs over control groups with intervals from resampling heads (not pairs)."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from ihlib.model.validation import integer, seed_value

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


@dataclass(frozen=True)
class Interval:
    """A mean with its interval, as floats (`low`, `high` NaN when there is no interval)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, stats: dict, index: int | None = None) -> Interval:
        """Entry `index` of a `{mean, low, high}` dict of arrays (`mean_ci`'s), or the whole of a dict of scalars."""
        value = (lambda v: np.asarray(v)[index]) if index is not None else np.asarray
        return cls(*(float(value(stats[key])) for key in ("mean", "low", "high")))


def read_error_change(change: Interval, tolerance: float) -> str:
    """Read an error change: "intact" (high < tolerance), "breaks" (low > tolerance), else "unclear"."""
    if change.high < tolerance:
        return "intact"
    if change.low > tolerance:
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


LARGE_EFFECT = 0.8  # Cohen's d of a "large" effect: the listed mean a pooled standard deviation (x 0.8) above
BOOTSTRAP_SAMPLES = 2000  # head resamples per comparison
BOOTSTRAP_CHUNK = 200  # resamples per vectorised step


@dataclass(frozen=True)
class Effect:
    """Listed minus control pair means, with a 95% interval and a one-sided p-value from resampling heads.

    `standardized` is Cohen's d: the difference over the pooled standard deviation of the pair values.
    `p_value` is the bootstrap share of resampled differences at or below 0, `(k + 1) / (B + 1)`.
    """

    control: str
    listed_mean: float
    control_mean: float
    difference: float
    low: float
    high: float
    p_value: float
    standardized: float
    n_listed: int
    n_control: int

    @property
    def clear(self) -> bool:
        """True when the interval lies above 0 and the effect is large (`standardized >= LARGE_EFFECT`)."""
        return self.low > 0 and self.standardized >= LARGE_EFFECT

    def record(self) -> dict:
        """JSON-friendly numbers."""
        return asdict(self)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of `values (..., n, m)` over the entries where `mask (..., n, m)` is True; NaN where none is."""
    count = mask.sum((-2, -1))
    total = np.where(mask, values, 0.0).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def head_resampled_means(
    values: np.ndarray, mask: np.ndarray, symmetric: bool, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Means `(n_boot,)` of a pair grid `values (n, m)` over `mask` after resampling its heads with replacement.

    Rows and columns are resampled independently; a symmetric grid (one set of heads paired with itself)
    resamples its heads once for both sides, and a head drawn twice never pairs with itself (`mask` is
    False on the diagonal). Pairs that share a head move together, so the spread reflects the heads.
    """
    n, m = values.shape
    means = []
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, n_boot - start)
        rows = rng.integers(n, size=(size, n))
        cols = rows if symmetric else rng.integers(m, size=(size, m))
        index = (rows[:, :, None], cols[:, None, :])
        means.append(masked_mean(values[index], mask[index]))
    return np.concatenate(means)


def head_bootstrap_effect(
    control: str,
    listed: tuple[np.ndarray, np.ndarray, bool],
    baseline: tuple[np.ndarray, np.ndarray, bool],
    *,
    n_boot: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Effect:
    """Effect of the listed pairs over a control group, each given as `(values (n, m), mask, symmetric)`.

    Both grids are resampled by heads (`head_resampled_means`), independently, `n_boot` times (seeded).
    """
    n_boot, seed = integer(n_boot, "n_boot", low=1), seed_value(seed)
    rng_listed, rng_control = np.random.default_rng([seed, n_boot]).spawn(2)
    listed_boot = head_resampled_means(*listed, n_boot, rng_listed)
    control_boot = head_resampled_means(*baseline, n_boot, rng_control)
    differences = (listed_boot - control_boot)[~np.isnan(listed_boot - control_boot)]
    listed_values, control_values = _pair_values(*listed), _pair_values(*baseline)
    difference = float(listed_values.mean() - control_values.mean())
    pooled = float(np.sqrt((listed_values.var() + control_values.var()) / 2))
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5]))
    return Effect(
        control,
        float(listed_values.mean()),
        float(control_values.mean()),
        difference,
        low,
        high,
        float((np.sum(differences <= 0) + 1) / (differences.size + 1)),
        difference / pooled if pooled > 0 else float("inf") * np.sign(difference),
        int(listed_values.size),
        int(control_values.size),
    )


def _pair_values(values: np.ndarray, mask: np.ndarray, symmetric: bool) -> np.ndarray:
    """The values of the distinct pairs of a grid (upper triangle when symmetric)."""
    return values[np.triu(mask, 1)] if symmetric else values[mask]


def effects_label(effects: dict[str, Effect], primary: str) -> str:
    """Label from effects over controls: supported when every control's effect is `clear`; partly when the
    `primary` control's interval lies above 0; not supported otherwise; not tested without the primary control."""
    if primary not in effects:
        return "not tested"
    if all(effect.clear for effect in effects.values()):
        return "supported"
    if effects[primary].low > 0:
        return "partly supported"
    return "not supported"
