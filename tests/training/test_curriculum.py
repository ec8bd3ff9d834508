"""The measured curriculum: phases end on their condition or cap, copy rows follow the phase, runs stay seeded."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.loading import new_model
from ihlib.training.copy_trainer import ModelTrainConfig, TrainConfig
from ihlib.training.curriculum import MEASURED_PHASES, Phase, PhaseClock, phase_from_record
from ihlib.training.language_trainer import (
    ADAPTIVE,
    LanguageModelReport,
    LanguageTrainConfig,
    config_from_record,
    nudge_weights,
    train_language,
)
from ihlib.training.synthetic_language import LanguageConfig

SMALL = LanguageConfig(vocab_size=64, n_names=16, n_topics=2, successors=3, min_copy=4, max_copy=8)
FIRST = Phase("layer 1", silenced=((0,),), until_induction_in=((1,),), bar=0.5, min_steps=2, max_steps=10)
SECOND = Phase("mixed", silenced=((1,), ()), all_heads=True, copy_fraction=0.5)
TINY = LanguageTrainConfig(
    vocab_size=64,
    n_positions=32,
    n_embd=32,
    n_layer=2,
    n_head=2,
    steps=6,
    batch_size=4,
    seq_len=32,
    max_seg=10,
    copy_heads=1,
    checkpoint_every=2,
    phase_check_every=1,
    silence_phases=(),
    phases=(dataclasses.replace(FIRST, max_steps=3), SECOND),
    language=SMALL,
)


def induction(layer_1_head_0: float, layer_1_head_1: float = 0.0) -> np.ndarray:
    """Induction scores `(2, 2)` that are zero except layer 1's."""
    return np.array([[0.0, 0.0], [layer_1_head_0, layer_1_head_1]])


def test_a_phase_ends_when_its_condition_holds_but_not_before_min_steps():
    clock = PhaseClock((FIRST, SECOND), copy_heads=1)
    clock.update(1, induction(0.9))
    assert clock.current is FIRST
    clock.update(2, induction(0.4))
    assert clock.current is FIRST
    clock.update(3, induction(0.6))
    assert clock.current is SECOND and clock.history[-1] == {"phase": "mixed", "step": 3, "why": "condition"}


def test_only_the_heads_meant_to_become_induction_heads_count_for_the_condition():
    clock = PhaseClock((FIRST, SECOND), copy_heads=1)
    clock.update(5, induction(0.1, 0.9))
    assert clock.current is FIRST
    assert FIRST.condition_met(induction(0.1, 0.9), copy_heads=None)


def test_a_phase_ends_at_its_cap_when_its_condition_never_holds():
    clock = PhaseClock((FIRST, SECOND), copy_heads=1)
    assert [clock.at(step).name for step in (0, 9, 10, 11)] == ["layer 1", "layer 1", "mixed", "mixed"]
    assert clock.history == [
        {"phase": "layer 1", "step": 0, "why": "start"},
        {"phase": "mixed", "step": 10, "why": "cap"},
    ]


def test_a_group_of_layers_is_met_by_an_induction_head_in_any_of_its_layers():
    phase = Phase("either", until_induction_in=((0, 1),), bar=0.5)
    assert phase.condition_met(np.array([[0.0, 0.0], [0.6, 0.0]]), copy_heads=None)
    assert not Phase("both", until_induction_in=((0,), (1,)), bar=0.5).condition_met(
        np.array([[0.0, 0.0], [0.6, 0.0]]), copy_heads=None
    )
    assert not Phase("to its cap").condition_met(np.ones((2, 2)), copy_heads=None)


def test_copy_rows_under_a_phase_silence_its_layers_and_the_heads_past_copy_heads():
    rows = TINY.copy_rows(0, FIRST)
    assert (rows.n_rows, rows.silenced, rows.detached, rows.weight) == (4, [(0, 0), (0, 1), (1, 1)], [], 1.0)
    mixed = [TINY.copy_rows(step, SECOND) for step in (0, 1)]
    assert [rows.silenced for rows in mixed] == [[(1, 0), (1, 1)], []]
    assert mixed[0].n_rows == 2 and mixed[0].weight == TINY.copy_weight


def test_phases_with_layers_outside_the_model_or_empty_mixes_are_rejected():
    with pytest.raises(IHLibError, match="layers in 0..1"):
        dataclasses.replace(TINY, phases=(Phase("bad", silenced=((2,),)),))
    with pytest.raises(IHLibError, match="copy_fraction=0.0"):
        dataclasses.replace(TINY, phases=(Phase("bad", copy_fraction=0.0),))
    with pytest.raises(IHLibError, match="multiple of phase_check_every"):
        dataclasses.replace(TINY, checkpoint_every=5, phase_check_every=2)


def test_the_adaptive_recipe_round_trips_through_its_json_record():
    record = json.loads(json.dumps(dataclasses.asdict(ADAPTIVE)))
    assert config_from_record(record) == ADAPTIVE
    assert [phase_from_record(phase) for phase in record["phases"]] == list(MEASURED_PHASES)


def test_a_phased_run_records_its_phases_and_is_bitwise_reproducible():
    first, log = train_language(TINY, progress=False)
    second, _ = train_language(TINY, progress=False)
    assert [(entry["phase"], entry["step"]) for entry in log["phases"]][0] == ("layer 1", 0)
    assert log["phases"][-1]["step"] <= 3 and [c["step"] for c in log["checkpoints"]] == [0, 2, 4, 6]
    assert log["checkpoints"][0]["phase"] == "layer 1" and log["checkpoints"][-1]["phase"] == "mixed"
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_nudged_weights_move_by_about_the_nudge_and_the_same_seed_nudges_alike():
    model = new_model(TINY.gpt2_config())
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    nudge_weights(model, 1e-3, seed=0)
    moved = torch.cat([(model.state_dict()[name] - tensor).flatten() for name, tensor in before.items()])
    assert 0.9e-3 < moved.std().item() < 1.1e-3
    again = new_model(TINY.gpt2_config())
    again.load_state_dict(before)
    nudge_weights(again, 1e-3, seed=0)
    assert all(torch.equal(again.state_dict()[name], tensor) for name, tensor in model.state_dict().items())


def test_both_trainers_share_the_architecture_fields_and_keep_their_own_defaults():
    shared = [field.name for field in dataclasses.fields(ModelTrainConfig)]
    assert len(shared) == 11
    for cfg in (TrainConfig(), LanguageTrainConfig()):
        assert list(dataclasses.asdict(cfg))[:11] == shared
    assert (TrainConfig().n_layer, TrainConfig().steps, TrainConfig().batch_size) == (3, 3000, 64)
    assert LanguageTrainConfig().gpt2_config().n_layer == 4 and TrainConfig().gpt2_config().n_layer == 3


def report(induction_rows: list[list[float]], shifting_rows: list[list[float]], **numbers: float):
    """A `LanguageModelReport` with the given head scores; the other numbers meet their targets unless given."""
    values = {"word_loss": 2.5, "unigram_entropy": 4.5, "bigram_entropy": 3.0, "copy_accuracy": 0.95, **numbers}
    return LanguageModelReport(induction=np.array(induction_rows), shifting=np.array(shifting_rows), **values)


LOW = [0.03] * 4


def test_a_model_with_induction_in_two_layers_after_shifting_heads_meets_every_target():
    good = report([LOW, [0.8, 0.03, 0.03, 0.03], [0.7, 0.03, 0.03, 0.03]], [[0.7, 0.05, 0.05, 0.05], LOW, LOW])
    assert good.missed_targets() == []


def test_missed_targets_name_what_failed():
    one_layer = report([LOW, [0.8, 0.03, 0.03, 0.03], LOW], [[0.7, 0.05, 0.05, 0.05], LOW, LOW], word_loss=3.1)
    missed = one_layer.missed_targets()
    assert len(missed) == 2
    assert missed[0].startswith("induction heads in at least 2 layers") and "3.100 against 3.000" in missed[1]
    crowded = report([LOW, [0.8, 0.8, 0.8, 0.03], [0.7] * 4], [[0.7, 0.05, 0.05, 0.05], LOW, LOW], copy_accuracy=0.5)
    assert crowded.missed_targets()[0].startswith("every layer with induction heads holds at least 2")
    assert "copying top-1 >= 0.9 (got 0.500)" in crowded.missed_targets()
    no_shift_before = report([LOW, [0.8, 0.03, 0.03, 0.03], [0.7, 0.03, 0.03, 0.03]], [LOW, LOW, [0.7] + LOW[1:]])
    assert no_shift_before.missed_targets() == ["shifting heads in a layer before some induction heads"]
