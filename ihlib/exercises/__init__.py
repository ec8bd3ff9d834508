"""Exercises where students write the code: each `check_<name>(fn)` runs a student's function on small cases against
the library's and raises AssertionError saying what differs (also for a stub that raises NotImplementedError or
returns None); it returns a one-line summary when every case agrees."""

from ihlib.exercises.checks import (
    check_diagonal_zscore,
    check_induction_score,
    check_key_swap,
    check_principal_angles,
    check_reversible_edit,
)

__all__ = [
    "check_diagonal_zscore",
    "check_induction_score",
    "check_key_swap",
    "check_principal_angles",
    "check_reversible_edit",
]
