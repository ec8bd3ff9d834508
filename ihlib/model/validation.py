"""Checks of plain arguments, shared by every module: integers in range, with messages that name the argument."""

from __future__ import annotations

import math
from numbers import Integral, Real

from ihlib.model.errors import ParameterError


def integer(value: object, name: str, *, low: int, high: int | None = None) -> int:
    """Return `value` as an int in `low..high` (no upper bound when `high` is None), or raise naming `name`."""
    allowed = f"{low}..{high}" if high is not None else f"at least {low}"
    if not is_whole(value):
        raise ParameterError(f"{name}={value!r} must be a whole number ({allowed}).")
    if int(value) < low or (high is not None and int(value) > high):
        raise ParameterError(f"{name}={value!r} is out of range: choose {allowed}.")
    return int(value)


def is_whole(value: object) -> bool:
    """Whether `value` is a finite whole number, not a bool (2 and 2.0 are; 2.7, inf, NaN, True and "2" are not)."""
    if isinstance(value, bool) or not isinstance(value, Integral | Real):
        return False
    return isinstance(value, Integral) or (math.isfinite(value) and int(value) == value)


def seed_value(value: object, name: str = "seed") -> int:
    """Return `value` as a seed: a whole number, at least 0 (2.0 counts as 2), or raise naming `name`."""
    return integer(value, name, low=0)
