"""Known answers: every claim chapter's judgement on each planted variant falls in the declared truth set.

The truth (`ihlib.model.planted_truth`) was committed before these tests ran. A judgement outside its set is a
test (claim code) that needs fixing, marked xfail(strict) with the precise reason until it is. Each variant is
judged once (`FAST` options, the chapters' rules) and every claim is asserted separately on that one result.
"""

from __future__ import annotations

import pytest

from ihlib.claims.known_answers import FAST, judge_claims
from ihlib.model.planted import planted_model
from ihlib.model.planted_truth import CLAIMS, TRUTH

KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def judged():
    """Every claim's judgement per planted variant (tiny shape, `FAST` options), each variant judged once."""
    results: dict = {}

    def of(variant: str):
        if variant not in results:
            results[variant] = judge_claims(planted_model(variant), FAST)
        return results[variant]

    return of


def _cases():
    """(variant, claim) pairs, the known disagreements marked xfail(strict)."""
    for variant in TRUTH:
        for claim in CLAIMS:
            reason = KNOWN_DISAGREEMENTS.get((variant, claim))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(variant, claim, marks=marks, id=f"{variant}-{claim.replace(' ', '_')}")


@pytest.mark.parametrize("variant, claim", list(_cases()))
def test_judgement_falls_in_the_declared_truth(judged, variant, claim):
    """The label the chapters' rule gives `claim` on the planted `variant` is one the construction declares correct."""
    result = judged(variant)
    label = result.labels[claim]
    assert label in TRUTH[variant][claim], (
        f"{variant}, {claim}: got {label!r}, truth {sorted(TRUTH[variant][claim])}; {result.numbers.get(claim, '')}"
    )
