"""Each exercise checker passes a correct student function (written plainly, loop by loop) and fails, with a message
that says what differs, on a stub, a function that returns None, and typical wrong answers."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from ihlib.core.factored import principal_angles
from ihlib.exercises import (
    check_diagonal_zscore,
    check_induction_score,
    check_key_swap,
    check_principal_angles,
    check_reversible_edit,
)
from ihlib.exercises.checks import ideal_induction_pattern, induction_score_of_pattern
from ihlib.heads.scoring import uniform_head_scores


def stub(*args):
    raise NotImplementedError


def forgot_return(*args):
    args[0] * 2


# --- induction score ---------------------------------------------------------------------------------------------


def induction_score_loops(attention, seg_len, rep):
    """Drop position 0, renormalise each row, sum attention on the token after each earlier occurrence, average."""
    a = attention.clone().double()
    a[:, 0] = 0
    a[0, :] = 0
    total = 0.0
    queries = range(seg_len, seg_len * rep)
    for i in queries:
        row = a[i] / a[i].sum()
        total += sum(float(row[i - k * seg_len + 1]) for k in range(1, i // seg_len + 1))
    return total / len(queries)


def induction_score_without_renormalising(attention, seg_len, rep):
    total = 0.0
    for i in range(seg_len, seg_len * rep):
        total += sum(float(attention[i, i - k * seg_len + 1]) for k in range(1, i // seg_len + 1))
    return total / (seg_len * (rep - 1))


def test_the_library_reference_scores_ideal_and_uniform_heads():
    """An ideal induction head scores 1; a uniform one scores the book's uniform-attention baseline."""
    assert induction_score_of_pattern(ideal_induction_pattern(5, 3), 5, 3) == pytest.approx(1.0)
    uniform = torch.tril(torch.ones(18, 18, dtype=torch.float64))
    uniform /= uniform.sum(-1, keepdim=True)
    assert induction_score_of_pattern(uniform, 6, 3) == pytest.approx(uniform_head_scores(6, 3)["induction"])


def test_induction_checker_passes_a_plain_loop_and_fails_wrong_ones():
    assert "6 patterns" in check_induction_score(induction_score_loops)
    with pytest.raises(AssertionError, match="not implemented yet"):
        check_induction_score(stub)
    with pytest.raises(AssertionError, match="returned None"):
        check_induction_score(forgot_return)
    with pytest.raises(AssertionError, match=r"on a random pattern.*expected"):
        check_induction_score(induction_score_without_renormalising)


# --- diagonal z-score --------------------------------------------------------------------------------------------


def zscore_loops(M):
    values = [float(v) for v in M.flatten()]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    diagonal = sum(float(M[i, i]) for i in range(M.shape[0])) / M.shape[0]
    return (diagonal - mean) / std


def test_zscore_checker_passes_a_plain_loop_and_fails_wrong_ones():
    assert "4 matrices" in check_diagonal_zscore(zscore_loops)
    with pytest.raises(AssertionError, match="not implemented yet"):
        check_diagonal_zscore(stub)
    with pytest.raises(AssertionError, match="returned None"):
        check_diagonal_zscore(forgot_return)
    with pytest.raises(AssertionError, match="expected"):
        check_diagonal_zscore(lambda M: float((M.diagonal().mean() - M.mean()) / M.std()))  # sample std
    with pytest.raises(AssertionError, match="expected"):
        check_diagonal_zscore(lambda M: float(M.diagonal().mean() / M.std(correction=0)))  # mean not subtracted


# --- principal angles ----------------------------------------------------------------------------------------------


def angles_by_gram_schmidt(A, B):
    def orthonormal(M):
        columns = []
        for column in M.T:
            for q in columns:
                column = column - (q @ column) * q
            columns.append(column / column.norm())
        return torch.stack(columns, dim=1)

    cosines = np.linalg.svd((orthonormal(A).T @ orthonormal(B)).numpy(), compute_uv=False)
    return torch.from_numpy(np.arccos(np.clip(cosines, 0, 1)))


def test_principal_angles_of_known_subspaces():
    """Shared direction: angle 0; a plane tilted by 45 degrees; orthogonal spans: pi/2; cos(first) = match score."""
    A = torch.eye(4, dtype=torch.float64)[:, :2]
    B = torch.tensor([[1.0, 0], [0, 1], [0, 1], [0, 0]], dtype=torch.float64)
    np.testing.assert_allclose(principal_angles(A, B), [0, math.pi / 4], atol=1e-12)
    np.testing.assert_allclose(principal_angles(A, torch.eye(4)[:, 2:]), [math.pi / 2] * 2, atol=1e-12)


def test_angles_checker_passes_gram_schmidt_and_fails_wrong_ones():
    assert "5 pairs" in check_principal_angles(angles_by_gram_schmidt)
    with pytest.raises(AssertionError, match="not implemented yet"):
        check_principal_angles(stub)
    with pytest.raises(AssertionError, match="returned None"):
        check_principal_angles(forgot_return)
    with pytest.raises(AssertionError, match="expected"):  # skips the orthonormalisation
        check_principal_angles(lambda A, B: torch.arccos(torch.linalg.svdvals(A.T @ B).clamp(0, 1)))
    with pytest.raises(AssertionError, match="expected"):  # cosines, not angles
        check_principal_angles(lambda A, B: torch.cos(angles_by_gram_schmidt(A, B)))


# --- reversible edit -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def projected(weight, P):
    saved = weight.clone()
    try:
        with torch.no_grad():
            weight.copy_(P @ weight)
        yield
    finally:
        with torch.no_grad():
            weight.copy_(saved)


@contextlib.contextmanager
def never_restored(weight, P):
    with torch.no_grad():
        weight.copy_(P @ weight)
    yield


@contextlib.contextmanager
def restored_only_without_errors(weight, P):
    saved = weight.clone()
    with torch.no_grad():
        weight.copy_(P @ weight)
    yield
    with torch.no_grad():
        weight.copy_(saved)


@contextlib.contextmanager
def swallowing(weight, P):
    saved = weight.clone()
    with torch.no_grad():
        weight.copy_(P @ weight)
    try:
        yield
    except Exception:
        pass
    finally:
        with torch.no_grad():
            weight.copy_(saved)


@contextlib.contextmanager
def rebinding(weight, P):
    weight = P @ weight  # a new tensor: the model never sees it
    yield


@contextlib.contextmanager
def stub_edit(weight, P):
    raise NotImplementedError
    yield


def test_edit_checker_passes_try_finally_and_fails_wrong_ones():
    assert "bit for bit" in check_reversible_edit(projected)
    for wrong, message in [
        (never_restored, "not restored exactly"),
        (restored_only_without_errors, "after an exception"),
        (swallowing, "swallowed"),
        (rebinding, "in place"),
        (stub_edit, "not implemented yet"),
        (stub, "not implemented yet"),
        (forgot_return, "returned None"),
        (lambda weight, P: P @ weight, "not a context manager"),
    ]:
        with pytest.raises(AssertionError, match=message):
            check_reversible_edit(wrong)


# --- reversible swap of two heads' keys -----------------------------------------------------------------------------


@contextlib.contextmanager
def swapped(w_a, w_b):
    saved_a, saved_b = w_a.detach().clone(), w_b.detach().clone()
    try:
        with torch.no_grad():
            w_a.copy_(saved_b)
            w_b.copy_(saved_a)
        yield
    finally:
        with torch.no_grad():
            w_a.copy_(saved_a)
            w_b.copy_(saved_b)


@contextlib.contextmanager
def swapped_without_copy(w_a, w_b):
    saved_a, saved_b = w_a.detach().clone(), w_b.detach().clone()
    try:
        with torch.no_grad():
            w_a.copy_(w_b)  # w_a is overwritten before it is read: both get w_b
            w_b.copy_(w_a)
        yield
    finally:
        with torch.no_grad():
            w_a.copy_(saved_a)
            w_b.copy_(saved_b)


@contextlib.contextmanager
def swapped_never_restored(w_a, w_b):
    saved_a = w_a.detach().clone()
    with torch.no_grad():
        w_a.copy_(w_b)
        w_b.copy_(saved_a)
    yield


def test_swap_checker_passes_try_finally_and_fails_wrong_ones():
    assert "bit for bit" in check_key_swap(swapped)
    for wrong, message in [
        (swapped_without_copy, "L1H2 inside the swap"),
        (swapped_never_restored, "not restored exactly"),
        (stub_edit, "not implemented yet"),
        (stub, "not implemented yet"),
        (forgot_return, "returned None"),
        (lambda w_a, w_b: (w_b, w_a), "not a context manager"),
    ]:
        with pytest.raises(AssertionError, match=message):
            check_key_swap(wrong)
