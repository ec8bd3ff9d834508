"""Checks of plain arguments, shared by every module: integers in range, with messages that name the argument."""

from __future__ import annotations

from numbers import Integral, Real

from ihlib.model.errors import ParameterError


def integer(value: object, name: str, *, low: int, high: int | None = None) -> int:
    """Return `value` as an int in `low..high` (no upper bound when `high` is None), or raise naming `name`."""
    allowed = f"{low}..{high}" if high is not None else f"at least {low}"
    if isinstance(value, bool) or not isinstance(value, Integral | Real) or int(value) != value:
        raise ParameterError(f"{name}={value!r} must be a whole number ({allowed}).")
    if int(value) < low or (high is not None and int(value) > high):
        raise ParameterError(f"{name}={value!r} is out of range: choose {allowed}.")
    return int(value)
