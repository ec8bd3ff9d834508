"""The route analysis in words: the scope names the route the weights are read along, the route verdict says whether
it is the seed's test, and the summary gives one sentence per route with the numbers it comes from."""

from __future__ import annotations

import pytest
import torch
from route_models import route_model

from ihlib.claims.verdicts import Verdict
from ihlib.core.mlp_route import mlp_route_weights
from ihlib.model.weights import head_weights
from ihlib.report.route_sentences import (
    SAME_TEST_SCOPE,
    carrying_route_of,
    projection_route_reading,
    route_scope,
    route_summary,
    route_verdict,
    saved_carrying_route,
)
from ihlib.report.saving import save_result
from ihlib.report.sentences import WEIGHT_SCOPE
from ihlib.tools.route_shares import carrying_route, carrying_route_weights, route_analysis
from ihlib.tools.routes import PatchSettings

SETTINGS = PatchSettings(seg_len=10, burn_in=2, batch_size=30)


@pytest.fixture(scope="module", params=["direct", "mlp"])
def known(request):
    """`(route, model, analysis)` of a hand-built model whose previous-token route is `route`."""
    model = route_model(request.param)
    return request.param, model, route_analysis(model, [(1, 0)], [(0, 0)], settings=SETTINGS, n_boot=200)


def test_the_carrying_route_weights_are_the_model_weights_on_the_direct_route_and_through_mlp0_otherwise(known):
    route, model, analysis = known
    carrying = carrying_route(analysis)
    W_all, ids = head_weights(model), SETTINGS.batch(model)
    weights = carrying_route_weights(model, W_all, ids, carrying)
    if route == "direct":
        assert torch.equal(weights.W_all, W_all.cpu()) and route_scope(weights) == SAME_TEST_SCOPE
    else:
        expected = mlp_route_weights(model, W_all, ids, mlp_layer=0, key_route="mlp").W_all
        torch.testing.assert_close(weights.W_all, expected)
        scope = route_scope(weights)
        assert scope.startswith("weights through MLP0") and "J0 W_ov" in scope and "queries through" in scope
        assert scope not in (WEIGHT_SCOPE, SAME_TEST_SCOPE)


def test_the_route_verdict_says_whether_it_is_the_seeds_test_and_keeps_the_label(known):
    route, _, analysis = known
    judged = Verdict("Claim 1", "supported", "The listed pairs clear 3 of 3.", caveat="weights only.", scope="s")
    verdict = route_verdict(judged, carrying_route(analysis))
    assert verdict.verdict == "supported" and verdict.scope == "s" and verdict.text.endswith(judged.text)
    both = analysis.copying_drops[2, 0]
    assert f"both together {both:+.2f} [" in verdict.text  # each removal alone, so that redundant routes show
    assert verdict.summary.endswith(": the listed pairs clear 3 of 3.") and verdict.summary.count(". ") == 0
    if route == "direct":
        assert "same test" in verdict.text and verdict.caveat == judged.caveat
        assert "repeats the direct test" in verdict.summary
    else:
        assert verdict.text.startswith("Not the seed's test") and "MLP0" in verdict.text
        assert verdict.summary.startswith("Read along MLP0, which carries +")
        assert verdict.caveat.endswith(judged.caveat) and "linearisation" in verdict.caveat


def test_the_summary_gives_each_routes_share_of_copying_and_the_cost(known):
    route, _, analysis = known
    text = route_summary(analysis, carrying_route(analysis))._repr_markdown_()
    direct = f"{analysis.copying_shares[0, 0]:+.2f}"
    assert f"direct write carries {direct} [" in text
    assert f"Cost: {analysis.forwards} batched forwards of 30 sequences" in text
    assert ("through the direct write" in text) == (route == "direct")


def test_the_saved_carrying_route_reads_back_for_its_model_and_heads_only(known, tmp_path):
    route, model, analysis = known
    carrying = carrying_route(analysis)
    save_result(carrying, tmp_path)
    heads = ([(1, 0)], [(0, 0)])
    assert saved_carrying_route(tmp_path, carrying.model, *heads) == carrying
    assert len(carrying.alone) == 3 and carrying.alone[2].mean == pytest.approx(analysis.copying_drops[2, 0])
    assert saved_carrying_route(tmp_path, "another model", *heads) is None
    assert saved_carrying_route(tmp_path, carrying.model, [(1, 1)], [(0, 0)]) is None
    assert saved_carrying_route(tmp_path / "missing", carrying.model, *heads) is None
    text = projection_route_reading(carrying)._repr_markdown_()
    assert f"direct write carries {carrying.direct.mean:+.2f} [" in text and "both routes at once" in text
    assert ("leaves out" in text) == (route == "mlp")
    assert carrying_route_of(tmp_path, model, *heads) == carrying  # read back, no forward
    measured = carrying_route_of(tmp_path / "missing", model, *heads, settings=SETTINGS, n_boot=200)
    assert measured.route == carrying.route and measured.direct == carrying.direct
