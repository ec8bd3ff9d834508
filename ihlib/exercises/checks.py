"""The checkers of the book's "implement it" exercises, each against the library's own function on small cases.

Conventions the students' functions follow (the same as the library's): an attention pattern is `(T, T)` with
queries as rows; a weight is a `(d_model, d_head)` column-convention map edited in place; a subspace is the span of
a `(d, r)` matrix's columns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from transformers import GPT2Config

from ihlib.core.circuits import diagonal_zscore
from ihlib.core.edits import component_views, pairs_edit, projection_edit
from ihlib.core.factored import principal_angles, random_orthonormal, subspace_projector
from ihlib.exercises.running import assert_close, call_student
from ihlib.heads.scoring import position_scores_from_attention, renormalise_without_first
from ihlib.model.loading import new_model


def induction_score_of_pattern(attention: torch.Tensor | np.ndarray, seg_len: int, rep: int) -> float:
    """The library's induction score of one head from its pattern `(T, T)` on `seg_len` tokens repeated `rep` times:
    first position dropped and rows renormalised, attention on the tokens after earlier occurrences, averaged over
    the queries from the second copy on."""
    attn = renormalise_without_first(torch.as_tensor(attention, dtype=torch.float64))
    return float(np.nanmean(position_scores_from_attention(attn, seg_len, rep)["induction"]))


def causal_pattern(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over keys `<=` the query of `scores (T, T)`: a valid attention pattern, float64."""
    t = scores.shape[-1]
    return torch.softmax(scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf")), dim=-1)


def ideal_induction_pattern(seg_len: int, rep: int) -> torch.Tensor:
    """`(T, T)`: from the second copy on, every query attends only to the token after its previous occurrence."""
    t = seg_len * rep
    pattern = torch.eye(t, dtype=torch.float64)
    for query in range(seg_len, t):
        pattern[query] = 0.0
        pattern[query, query - seg_len + 1] = 1.0
    return pattern


def check_induction_score(fn: Callable[[torch.Tensor, int, int], float]) -> str:
    """Check `fn(attention (T, T), seg_len, rep) -> float` against `induction_score_of_pattern` on random, uniform,
    ideal and attention-sink patterns."""
    rng = torch.Generator().manual_seed(0)
    cases = {
        f"a random pattern, {s} tokens x {r}": (causal_pattern(torch.randn(s * r, s * r, generator=rng) * 2), s, r)
        for s, r in ((4, 2), (5, 3), (3, 4))
    }
    cases["a uniform pattern, 6 tokens x 3"] = (causal_pattern(torch.zeros(18, 18, dtype=torch.float64)), 6, 3)
    cases["an ideal induction head, 5 tokens x 3"] = (ideal_induction_pattern(5, 3), 5, 3)
    sink = causal_pattern(torch.randn(12, 12, generator=rng))
    sink[:, 0] += 5.0
    cases["a pattern with most attention on the first token, 4 tokens x 3"] = (sink / sink.sum(-1, keepdim=True), 4, 3)
    for case, (pattern, seg_len, rep) in cases.items():
        got = call_student(fn, case, pattern.clone(), seg_len, rep)
        assert_close(got, induction_score_of_pattern(pattern, seg_len, rep), case)
    return f"{_name(fn)} agrees with the library's induction score on {len(cases)} patterns."


def check_diagonal_zscore(fn: Callable[[torch.Tensor], float]) -> str:
    """Check `fn(M (d, d)) -> float` against `ihlib.core.circuits.diagonal_zscore` (population std over all
    entries) on random, shifted, identity-like and negative-diagonal matrices."""
    rng = np.random.default_rng(0)
    cases = {
        "a random 6 x 6 matrix": rng.standard_normal((6, 6)),
        "a random 5 x 5 matrix plus 3 everywhere": rng.standard_normal((5, 5)) + 3.0,
        "the identity plus noise, 8 x 8": np.eye(8) + 0.1 * rng.standard_normal((8, 8)),
        "a matrix with a negative diagonal, 4 x 4": rng.standard_normal((4, 4)) - 2.0 * np.eye(4),
    }
    for case, matrix in cases.items():
        M = torch.from_numpy(matrix)
        assert_close(call_student(fn, case, M.clone()), diagonal_zscore(M), case)
    return f"{_name(fn)} agrees with the library's diagonal z-score on {len(cases)} matrices."


def check_principal_angles(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """Check `fn(A (d, r0), B (d, r1)) -> angles` (radians, ascending, `min(r0, r1)`) against
    `ihlib.core.factored.principal_angles`, also on bases that are not orthonormal."""
    rng = np.random.default_rng(0)
    shared = random_orthonormal(rng, 6, 3)
    mixing = torch.from_numpy(rng.standard_normal((3, 3))) + 3 * torch.eye(3, dtype=torch.float64)
    cases = {
        "two random orthonormal 6 x 2 bases": (random_orthonormal(rng, 6, 2), random_orthonormal(rng, 6, 2)),
        "ranks 3 and 2 in 7 dimensions": (random_orthonormal(rng, 7, 3), random_orthonormal(rng, 7, 2)),
        "one subspace in two bases, the second not orthonormal": (shared, shared @ mixing),
        "orthogonal subspaces": (torch.eye(5, dtype=torch.float64)[:, :2], torch.eye(5, dtype=torch.float64)[:, 2:4]),
        "columns of different lengths": (
            torch.from_numpy(rng.standard_normal((6, 3))) * 5.0,
            torch.from_numpy(rng.standard_normal((6, 3))),
        ),
    }
    for case, (A, B) in cases.items():
        assert_close(call_student(fn, case, A.clone(), B.clone()), principal_angles(A, B), case, atol=1e-6)
    return f"{_name(fn)} agrees with the library's principal angles on {len(cases)} pairs of subspaces."


class _Probe(Exception):
    """Raised inside a student's edit to see that the weights come back when an error escapes."""


def check_reversible_edit(fn: Callable[[torch.Tensor, torch.Tensor], object]) -> str:
    """Check `fn(weight (d_model, d_head), P (d_model, d_model))`, a context manager that sets `weight <- P weight`
    in place inside the block and restores it bitwise on exit, also when an exception escapes; against
    `ihlib.core.edits.projection_edit` on the keys of one head of a small GPT-2."""
    model, (layer, head) = _small_gpt2(), (1, 2)
    rng = np.random.default_rng(0)
    P = subspace_projector(random_orthonormal(rng, model.config.n_embd, 3), project_out=True).float()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with projection_edit(model, [[layer, head]], P, "QK"):
        expected = component_views(model, layer, head, "QK")[2].clone()
    weight = component_views(model, layer, head, "QK")[2]  # W_k of L1H2, a view into the model's c_attn weight
    edit = call_student(fn, "the keys of L1H2 and a projector of rank 29", weight, P)
    if not (hasattr(edit, "__enter__") and hasattr(edit, "__exit__")):
        raise AssertionError(
            f"{_name(fn)} returned {type(edit).__name__}, not a context manager: decorate it with "
            "`@contextlib.contextmanager` and `yield` inside."
        )
    with _entered(edit):
        assert_close(weight, expected, "the weight inside the edit (it must change in place: `weight.copy_(...)`)")
    _assert_restored(model, before, "after the block")
    try:
        with _entered(call_student(fn, "a second edit", weight, P)):
            raise _Probe
    except _Probe:
        pass
    else:
        raise AssertionError(f"{_name(fn)} swallowed an exception raised inside the block: let it propagate.")
    _assert_restored(model, before, "after an exception inside the block (use try/finally)")
    return f"{_name(fn)} projects the weight as the library does and restores it bit for bit, also on errors."


def check_key_swap(fn: Callable[[torch.Tensor, torch.Tensor], object]) -> str:
    """Check `fn(w_a, w_b)` (two `(d_model, d_head)` key weights), a context manager that exchanges them in place
    inside the block and restores both bitwise on exit, also when an exception escapes; against the keys that
    `ihlib.core.edits.pairs_edit` gives two heads of a small GPT-2 when it swaps their QK components."""
    model, a, b = _small_gpt2(), (1, 0), (1, 2)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pairs_edit(model, [[list(a), list(b)], [list(b), list(a)]], "QK"):
        expected = [component_views(model, *head, "QK")[2].clone() for head in (a, b)]
    w_a, w_b = (component_views(model, *head, "QK")[2] for head in (a, b))  # views into the model's c_attn weight
    edit = call_student(fn, "the keys of L1H0 and L1H2", w_a, w_b)
    if not (hasattr(edit, "__enter__") and hasattr(edit, "__exit__")):
        raise AssertionError(
            f"{_name(fn)} returned {type(edit).__name__}, not a context manager: decorate it with "
            "`@contextlib.contextmanager` and `yield` inside."
        )
    with _entered(edit):
        assert_close(w_a, expected[0], "the keys of L1H0 inside the swap (they must change in place: `copy_`)")
        assert_close(w_b, expected[1], "the keys of L1H2 inside the swap (they must change in place: `copy_`)")
    _assert_restored(model, before, "after the block")
    try:
        with _entered(call_student(fn, "a second swap", w_a, w_b)):
            raise _Probe
    except _Probe:
        pass
    else:
        raise AssertionError(f"{_name(fn)} swallowed an exception raised inside the block: let it propagate.")
    _assert_restored(model, before, "after an exception inside the block (use try/finally)")
    return f"{_name(fn)} swaps the two heads' keys as the library does and restores them bit for bit, also on errors."


class _entered:
    """`with _entered(edit):` enters a student's context manager, reporting a stub's NotImplementedError."""

    def __init__(self, edit: object):
        self.edit = edit

    def __enter__(self) -> object:
        try:
            return self.edit.__enter__()
        except NotImplementedError as err:
            raise AssertionError("the edit is not implemented yet: replace `raise NotImplementedError`.") from err

    def __exit__(self, *exc: object) -> bool:
        return bool(self.edit.__exit__(*exc))


def _assert_restored(model: torch.nn.Module, before: dict[str, torch.Tensor], when: str) -> None:
    """AssertionError naming the first parameter of `model` that differs from `before` (bitwise)."""
    for name, value in model.state_dict().items():
        if not torch.equal(value, before[name]):
            changed = (value != before[name]).sum().item()
            raise AssertionError(f"{when}: {name} is not restored exactly ({changed} entries differ).")


def _small_gpt2() -> torch.nn.Module:
    """A seeded random GPT-2 of 2 layers x 4 heads, d_model 32."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=50, n_positions=32)
    return new_model(config).eval()


def _name(fn: Callable) -> str:
    """The student's function's name, for messages."""
    return getattr(fn, "__name__", "your function")
