"""Route shares: the hand-built models give their route the whole share, the Shapley split adds up and is
symmetric, the conditions name the MLPs between the heads, and the analysis saves with its cost."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from route_models import route_model

from ihlib.model.errors import HeadError
from ihlib.report.saving import save_result
from ihlib.tools.route_shares import (
    BOTH,
    DIRECT,
    THROUGH_MLPS,
    carrying_route,
    costliest_mlp,
    route_analysis,
    route_conditions,
    shapley_shares,
)
from ihlib.tools.routes import PatchSettings

SETTINGS = PatchSettings(seg_len=10, burn_in=2, batch_size=30)


@pytest.fixture(scope="module", params=["direct", "mlp"])
def known(request):
    """`(route, analysis)` of a hand-built model whose previous-token route is `route`."""
    return request.param, route_analysis(route_model(request.param), [(1, 0)], [(0, 0)], settings=SETTINGS, n_boot=200)


def test_the_route_the_model_uses_carries_the_share_and_the_other_none(known):
    """Induction: above 0.9 of it. Copying: above 0.7 (an IH attending uniformly to its context still copies a bit)."""
    route, analysis = known
    used, unused = (0, 1) if route == "direct" else (1, 0)
    for shares, floor in ((analysis.induction_shares[0], 0.9), (analysis.copying_shares, 0.7)):
        assert shares[used, 0] > floor and abs(shares[unused, 0]) < 0.05
        assert np.all(shares[:, 1] <= shares[:, 0] + 1e-12) and np.all(shares[:, 0] <= shares[:, 2] + 1e-12)
    assert analysis.induction_shares[0, 2, 0] < 0.1


def test_the_shares_add_up_to_one_and_the_split_is_symmetric():
    rng = np.random.default_rng(0)
    drops = {DIRECT: rng.uniform(size=5), THROUGH_MLPS: rng.uniform(size=5), BOTH: rng.uniform(size=5)}
    shares = shapley_shares(drops)
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    np.testing.assert_allclose(shares[:, 0] + shares[:, 1], drops[BOTH])
    swapped = shapley_shares({DIRECT: drops[THROUGH_MLPS], THROUGH_MLPS: drops[DIRECT], BOTH: drops[BOTH]})
    np.testing.assert_allclose(swapped[:, [1, 0, 2]], shares)
    # two routes that each carry everything alone (redundant) share it equally
    np.testing.assert_allclose(shapley_shares({DIRECT: 0.0, THROUGH_MLPS: 0.0, BOTH: 1.0}), [0.5, 0.5, 0.0])


def test_the_conditions_name_every_mlp_between_the_heads():
    conditions = route_conditions([[3, 1], [2, 0]], [[0, 0], [1, 2]])
    names = [condition.name for condition in conditions]
    assert names == [DIRECT, "MLP0 part", "MLP1 part", "MLP2 part", THROUGH_MLPS, BOTH]
    parts = conditions[4].routes
    assert [part.via for part in parts] == [((0, 0),), ((0, 0), (1, 2)), ((0, 0), (1, 2))]
    assert len(route_conditions([[1, 0]], [[0, 0]])) == 3  # one MLP: no separate "MLP0 part"


def test_the_analysis_saves_its_shares_and_cost(tmp_path, known):
    _, analysis = known
    assert analysis.forwards == 4  # one IH layer: the unedited forward and three conditions
    save_result(analysis, tmp_path)
    record = json.loads((tmp_path / "route_analysis.json").read_text())
    assert record["forwards"] == 4 and len(record["induction_shares"]["L1H0"]) == 3
    assert np.load(tmp_path / "route_analysis.npz")["induction_shares"].shape == (1, 3, 3)


def test_heads_in_the_wrong_order_are_refused():
    with pytest.raises(HeadError, match="No induction head lies after a shifting head"):
        route_analysis(route_model("direct"), [(0, 1)], [(1, 0)], settings=SETTINGS)


def test_the_carrying_route_is_the_one_the_hand_built_model_uses(known):
    route, analysis = known
    carrying = carrying_route(analysis)
    assert carrying.route == (DIRECT if route == "direct" else THROUGH_MLPS)
    assert carrying.is_direct == (route == "direct")
    assert carrying.mlp_layer == 0  # the only MLP between the shifting head (layer 0) and the IH (layer 1)
    assert carrying.direct.mean == pytest.approx(analysis.copying_shares[0, 0])
    assert json.loads(json.dumps(carrying.record()))["route"] == carrying.route


def test_the_costliest_mlp_is_the_one_whose_part_alone_raises_the_copy_error_most(known):
    _, analysis = known
    names = ["nothing", DIRECT, "MLP0 part", "MLP1 part", THROUGH_MLPS, BOTH]
    error = np.array([[0.1], [0.2], [0.3], [0.6], [0.7], [0.9]])
    together = SimpleNamespace(names=names, error=error)
    fake = SimpleNamespace(Shifting_list=((0, 0),), together=together)
    assert costliest_mlp(fake) == 1
    fake.together.error[2] = 0.8
    assert costliest_mlp(fake) == 0
