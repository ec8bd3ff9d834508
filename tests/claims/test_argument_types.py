"""Arguments of the functions the chapters call: whole-number floats count as ints, 2.7 is refused, never cut; every
error is a ParameterError (HeadError for heads) naming the argument at fault, never a TypeError from numpy or torch."""

from __future__ import annotations

import pytest
from conftest import random_gpt2

from ihlib.claims import diagonal, projection, projection_controls, subspaces, testability
from ihlib.core.copying import CopyingSettings, copy_accuracy
from ihlib.core.factored import head_subspaces
from ihlib.heads import scoring
from ihlib.model.errors import HeadError, ParameterError
from ihlib.model.head_ids import check_k
from ihlib.model.validation import integer
from ihlib.model.weights import head_weights
from ihlib.tools import losses, ov_copying

MODEL = random_gpt2(n_pos=128)
W = head_weights(MODEL)
IH, SH = [[1, 0], [1, 1]], [[0, 0], [0, 1]]
SUBSPACES = head_subspaces(W)
SCORES = scoring.head_scores(MODEL, batch_size=4, seg_len=5)
SMALL = dict(seg_len=6, rep=3, batch_size=4, n_exp=2, burn_in=1)

CALLS = {
    "head_scores": lambda **kw: scoring.head_scores(MODEL, **{"batch_size": 4, "seg_len": 5, **kw}),
    "uniform_head_scores": lambda **kw: scoring.uniform_head_scores(**kw),
    "copy_accuracy": lambda **kw: copy_accuracy(MODEL, **{"seg_len": 5, "batch_size": 4, **kw}),
    "diagonal_controls": lambda **kw: diagonal.diagonal_controls(W, IH, SH, **{"max_tokens": 50, "n_boot": 20, **kw}),
    "qkov_blocks": lambda **kw: diagonal.qkov_blocks(W, IH, **{"Shifting_list": SH, "block": 8, **kw}),
    "qkov_zscores": lambda **kw: diagonal.qkov_zscores(W, IH, SH, **{"num_samp": 10, **kw}),
    "common_subspace": lambda **kw: projection.common_subspace(W, IH, **kw),
    "rank_sweep": lambda **kw: projection.rank_sweep(**{"max_rank": 8, "step": 2, "n_available": 8, **kw}),
    "folds": lambda **kw: projection_controls.folds([*IH, [0, 2]], **kw),
    "match_subspaces": lambda **kw: subspaces.match_subspaces(
        SUBSPACES, **{"IH_list": IH, "Shifting_list": SH, "ranks": (2,), "num_samp": 5, **kw}
    ),
    "subspace_controls": lambda **kw: subspaces.subspace_controls(
        SUBSPACES, **{"IH_list": IH, "Shifting_list": SH, "ranks": (2,), "n_boot": 10, **kw}
    ),
    "missing_heads": lambda **kw: testability.missing_heads(SCORES, **kw),
    "position_loss": lambda **kw: losses.position_loss(MODEL, **{"seg_len": 5, "batch_size": 4, "n_boot": 10, **kw}),
    "ov_copying_scores": lambda **kw: ov_copying.ov_copying_scores(MODEL, **kw),
    "CopyingSettings": lambda **kw: CopyingSettings(**{**SMALL, **kw}).resolved(MODEL),
}

WHOLE_FLOATS = [
    ("head_scores", "seg_len"),
    ("head_scores", "seed"),
    ("uniform_head_scores", "rep"),
    ("copy_accuracy", "seg_len"),
    ("diagonal_controls", "n_boot"),
    ("qkov_zscores", "seed"),
    ("common_subspace", "rank"),
    ("folds", "n_folds"),
    ("subspace_controls", "seed"),
    ("missing_heads", "at_least"),
    ("position_loss", "seed"),
    ("CopyingSettings", "seg_len"),
    ("CopyingSettings", "n_exp"),
]


@pytest.mark.parametrize(("call", "name"), WHOLE_FLOATS)
def test_a_whole_number_float_counts_as_that_int(call, name):
    """`2.0` (what `-p n 2.0` or `1e3` gives a chapter) gives the result of `2`."""
    assert repr(CALLS[call](**{name: 2.0})) == repr(CALLS[call](**{name: 2}))


BAD = [
    ("head_scores", "seed", -1, "seed=-1 is out of range"),
    ("head_scores", "seed", 2.7, "seed=2.7 must be a whole number"),
    ("head_scores", "seg_len", 2.7, "seg_len=2.7 must be a whole number"),
    ("head_scores", "batch_size", 0, "batch_size=0 is out of range"),
    ("uniform_head_scores", "seg_len", 0, "seg_len=0 is out of range"),
    ("uniform_head_scores", "rep", "x", "rep='x' must be a whole number"),
    ("copy_accuracy", "seed", "x", "seed='x' must be a whole number"),
    ("diagonal_controls", "n_boot", 0, "n_boot=0 is out of range"),
    ("diagonal_controls", "seed", None, "seed=None must be a whole number"),
    ("diagonal_controls", "max_tokens", 2.7, "max_tokens=2.7 must be a whole number"),
    ("qkov_blocks", "block", 2.7, "block=2.7 must be a whole number"),
    ("qkov_blocks", "n_partners", "x", "n_partners='x' must be a whole number"),
    ("qkov_zscores", "num_samp", None, "num_samp=None must be a whole number"),
    ("common_subspace", "rank", 2.7, r"rank \(min\(d_model, K \* d_head\) at most\)=2.7 must be a whole number"),
    ("rank_sweep", "step", 2.7, "step=2.7 must be a whole number"),
    ("rank_sweep", "step", 9, "step=9 is larger than max_rank=8"),
    ("rank_sweep", "max_rank", 20, "max_rank=20 exceeds the 8 directions available"),
    ("folds", "n_folds", 0, "n_folds=0 is out of range"),
    ("match_subspaces", "num_samp", 2.7, "num_samp=2.7 must be a whole number"),
    ("subspace_controls", "n_boot", -1, "n_boot=-1 is out of range"),
    ("missing_heads", "at_least", 0, "at_least=0 is out of range"),
    ("missing_heads", "at_least", "x", "at_least='x' must be a whole number"),
    ("position_loss", "n_boot", "x", "n_boot='x' must be a whole number"),
    ("ov_copying_scores", "max_elements", None, "max_elements=None must be a whole number"),
    ("CopyingSettings", "seed", -1, "seed=-1 is out of range"),
    ("CopyingSettings", "rep", 2.7, "rep=2.7 must be a whole number"),
    ("CopyingSettings", "burn_in", -1, "burn_in=-1 is out of range"),
]


@pytest.mark.parametrize(("call", "name", "value", "message"), BAD, ids=lambda v: str(v))
def test_a_bad_argument_is_a_parameter_error_naming_it(call, name, value, message):
    with pytest.raises(ParameterError, match=message):
        CALLS[call](**{name: value})


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [(0, 2.7, r"contains the head 2\.7"), (5, 0, "contains layer 5"), ("x", 0, "contains the layer 'x'")],
)
def test_a_bad_head_of_ov_circuit_block_is_a_head_error(layer, head, message):
    with pytest.raises(HeadError, match=message):
        ov_copying.ov_circuit_block(MODEL, layer, head, [1, 2])


def test_whole_floats_pass_the_shared_checks_and_non_finite_numbers_do_not():
    """`integer` and `check_k` take 2.0 as 2; inf and NaN are refused with the argument's name, not OverflowError."""
    assert integer(2.0, "n", low=1) == 2 and type(integer(2.0, "n", low=1)) is int
    assert check_k(2.0, 4) == 2
    for value in (float("inf"), float("nan"), 2.7, True):
        with pytest.raises(ParameterError, match="n=.* must be a whole number"):
            integer(value, "n", low=1)
