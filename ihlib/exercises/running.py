"""Running a student's function: a stub, a crash or a missing result becomes an AssertionError saying what to do."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def call_student(fn: Callable, case: str, *args: object) -> object:
    """Return `fn(*args)`; raise AssertionError naming `case` when it is not implemented, raises, or returns None."""
    name = getattr(fn, "__name__", "your function")
    try:
        result = fn(*args)
    except NotImplementedError as err:
        raise AssertionError(
            f"{name} is not implemented yet: replace `raise NotImplementedError` by your code."
        ) from err
    except Exception as err:  # the student's bug, reported with the case that triggered it
        raise AssertionError(f"{name} raised {type(err).__name__}: {err} (on {case}).") from err
    if result is None:
        raise AssertionError(f"{name} returned None on {case}: did you forget `return`?")
    return result


def as_array(value: object, case: str) -> np.ndarray:
    """`value` (a tensor, array or number) as a float64 array; AssertionError when it is not numeric."""
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().double().numpy()
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"the result on {case} is not a number or tensor: {value!r}.") from err


def assert_close(got: object, expected: object, case: str, *, atol: float = 1e-6) -> None:
    """AssertionError naming `case`, the expected and the computed values when they differ by more than `atol`."""
    got_array, want = as_array(got, case), as_array(expected, case)
    if got_array.shape != want.shape:
        raise AssertionError(f"on {case}: expected shape {want.shape}, got {got_array.shape} ({got_array}).")
    if not np.allclose(got_array, want, atol=atol, rtol=0, equal_nan=True):
        raise AssertionError(f"on {case}: expected {np.round(want, 6)}, got {np.round(got_array, 6)}.")
