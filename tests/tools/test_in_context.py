"""The in-context learning score: late loss minus early loss per document, against a plain cross-entropy; strongly
negative where the late tokens repeat the early ones on the copy model, near zero for a random model; and the
per-layer ablation conditions group each layer's heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_gpt2

from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import ParameterError
from ihlib.tools.ablation import Ablation, ablated, per_layer_ablations
from ihlib.tools.in_context import icl_score, icl_under_ablations


def test_icl_score_is_the_late_minus_the_early_cross_entropy():
    """Early and late losses equal plain `F.cross_entropy` means over the chosen query positions."""
    model = random_gpt2(n_pos=64)
    ids = torch.randint(0, 97, (6, 40), generator=torch.Generator().manual_seed(0))
    result = icl_score(model, ids, early=(2, 8), late=(30, 39), n_boot=200)
    with torch.no_grad():
        logits = model(ids).logits[:, :-1]
    loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").double()  # (6, 39)
    early, late = loss[:, 2:8].mean(), loss[:, 30:39].mean()
    assert result.early_loss.mean == pytest.approx(float(early), abs=1e-5)
    assert result.late_loss.mean == pytest.approx(float(late), abs=1e-5)
    assert result.score.mean == pytest.approx(float(late - early), abs=1e-5)
    assert result.score.low <= result.score.mean <= result.score.high
    np.testing.assert_allclose(result.loss_by_position, loss.mean(0).numpy(), atol=1e-5)
    assert result.record()["n_documents"] == 6 and result.record()["late"] == [30, 39]


def test_copy_model_learns_in_context_on_repeated_segments(copy_model):
    """On 25 random tokens repeated twice, the copy model's loss falls from about ln 512 to near 0: score < -4 nats,
    its interval excluding 0; the same documents with a fresh second half give a score near 0."""
    ids = repeated_tokens(40, 25, 512, rep=2, seed=3)
    copied = icl_score(copy_model, ids, early=(5, 20), late=(30, 49))
    assert copied.score.high < -4.0 and copied.early_loss.mean > 5.0
    fresh = ids.clone()
    fresh[:, 25:] = torch.randint(0, 512, (40, 25), generator=torch.Generator().manual_seed(4))
    unrelated = icl_score(copy_model, fresh, early=(5, 20), late=(30, 49))
    assert abs(unrelated.score.mean) < 1.0


@pytest.mark.parametrize(("early", "late"), [((0, 0), (5, 9)), ((5, 3), (5, 9)), ((0, 5), (5, 12)), ((-1, 4), (5, 9))])
def test_icl_score_refuses_empty_or_outside_position_ranges(early, late):
    model = random_gpt2(n_pos=64)
    with pytest.raises(ParameterError, match="start < stop"):
        icl_score(model, torch.zeros(3, 12, dtype=torch.long), early=early, late=late)


def test_icl_score_refuses_documents_longer_than_the_context():
    with pytest.raises(ParameterError, match="exceed the context"):
        icl_score(random_gpt2(n_pos=16), torch.zeros(3, 20, dtype=torch.long), early=(1, 2), late=(5, 6))


def test_per_layer_ablations_group_each_layers_heads():
    conditions = per_layer_ablations([[2, 1], [1, 0], [2, 3], [1, 2]], kind="mean")
    assert conditions[0] == Ablation()
    assert [c.heads for c in conditions[1:]] == [((1, 0), (1, 2)), ((2, 1), (2, 3))]
    assert [c.name for c in conditions[1:]] == ["mean layer 1 (2 heads)", "mean layer 2 (2 heads)"]
    assert all(c.kind == "mean" for c in conditions[1:])


def test_icl_under_ablations_matches_icl_score_inside_each_ablation_and_restores_the_model():
    """Each condition's score equals `icl_score` run by hand inside `ablated`; the weights are unchanged after."""
    model = random_gpt2(n_pos=64)
    ids = torch.randint(0, 97, (5, 40), generator=torch.Generator().manual_seed(1))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    conditions = per_layer_ablations([(0, 1), (1, 0), (1, 1)])
    scores = icl_under_ablations(model, ids, conditions, early=(2, 8), late=(20, 39))
    assert list(scores) == [c.name for c in conditions]
    with ablated(model, conditions[2].heads, kind="zero"):
        by_hand = icl_score(model, ids, early=(2, 8), late=(20, 39))
    assert scores[conditions[2].name].score.mean == pytest.approx(by_hand.score.mean, abs=1e-9)
    assert scores[conditions[0].name].score.mean == pytest.approx(
        icl_score(model, ids, early=(2, 8), late=(20, 39)).score.mean, abs=1e-9
    )
    assert scores[conditions[0].name].score.mean != pytest.approx(by_hand.score.mean, abs=1e-6)
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


def test_icl_under_ablations_refuses_mean_ablation():
    with pytest.raises(ParameterError, match="zero ablations only"):
        icl_under_ablations(random_gpt2(n_pos=64), torch.zeros(2, 30, dtype=torch.long), [Ablation(((0, 0),), "mean")])
