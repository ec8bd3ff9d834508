"""Training dynamics: reading a synthetic `training.json` in the trainer's format, and the derived curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ihlib.model.errors import IHLibError
from ihlib.tools.dynamics import read_training_dynamics, training_dynamics

STEPS = [0, 100, 200, 300, 400]


def synthetic_record() -> dict:
    """Five checkpoints of a 2-layer, 3-head model, listed out of order; induction of L1H2 rises at step 200."""
    rng = np.random.default_rng(0)
    checkpoints = []
    for step in STEPS:
        induction = rng.uniform(0.0, 0.01, size=(2, 3))
        induction[1, 2] = {0: 0.02, 100: 0.05, 200: 0.5, 300: 0.8, 400: 0.82}[step]
        shifting = rng.uniform(0.0, 0.1, size=(2, 3))
        shifting[0, 1] = 0.1 + step / 500
        checkpoints.append(
            {"step": step, "loss": 6.0 - step / 100, "induction": induction.tolist(), "shifting": shifting.tolist()}
        )
    return {
        "train_config": {"steps": 400},
        "log": {"losses": [6.0, 5.9, 5.5, 1.0]},
        "checkpoints": checkpoints[::-1],
    }


def test_reader_sorts_checkpoints_and_stacks_scores(tmp_path):
    """From a model folder: steps sorted, scores `(5, 2, 3)` equal to the record's, losses in step order."""
    record = synthetic_record()
    (tmp_path / "training.json").write_text(json.dumps(record))
    dynamics = read_training_dynamics(tmp_path)
    np.testing.assert_array_equal(dynamics.step, STEPS)
    np.testing.assert_allclose(dynamics.loss, [6.0, 5.0, 4.0, 3.0, 2.0])
    assert dynamics.induction.shape == dynamics.shifting.shape == (5, 2, 3)
    by_step = {c["step"]: c for c in record["checkpoints"]}
    for i, step in enumerate(STEPS):
        np.testing.assert_allclose(dynamics.shifting[i], by_step[step]["shifting"])


def test_best_per_layer_equals_a_loop_over_heads():
    """`best_per_layer` is the max over the heads of each layer, checkpoint by checkpoint."""
    dynamics = training_dynamics(synthetic_record())
    expected = [[max(dynamics.induction[i, layer]) for layer in range(2)] for i in range(5)]
    np.testing.assert_allclose(dynamics.best_per_layer("induction"), expected)
    np.testing.assert_allclose(dynamics.best_per_layer("induction")[:, 1], [0.02, 0.05, 0.5, 0.8, 0.82])


def test_phase_change_step_is_where_the_best_head_passes_halfway():
    """The best induction score rises from 0.02 to 0.82: halfway (0.42) is passed at step 200, 95% at 300."""
    dynamics = training_dynamics(synthetic_record())
    assert dynamics.phase_change_step("induction") == 200
    assert dynamics.phase_change_step("induction", fraction=0.95) == 300


def test_logged_losses_take_the_trainers_stride_or_explicit_steps():
    """Without `log.steps`, losses are every `steps // 100` steps; with it, those steps are used."""
    record = synthetic_record()
    np.testing.assert_array_equal(training_dynamics(record).log_step, [0, 4, 8, 12])
    record["log"]["steps"] = [0, 10, 20, 30]
    dynamics = training_dynamics(record)
    np.testing.assert_array_equal(dynamics.log_step, [0, 10, 20, 30])
    np.testing.assert_allclose(dynamics.log_loss, [6.0, 5.9, 5.5, 1.0])


def test_records_without_checkpoints_or_with_ragged_scores_raise(tmp_path):
    """A record without checkpoints (the copy model's), a missing key and ragged scores raise `IHLibError`s."""
    with pytest.raises(IHLibError, match="no 'checkpoints'"):
        training_dynamics({"log": {"losses": [1.0]}})
    record = synthetic_record()
    del record["checkpoints"][2]["shifting"]
    with pytest.raises(IHLibError, match=r"checkpoints\[2\] lacks \['shifting'\]"):
        training_dynamics(record)
    record = synthetic_record()
    record["checkpoints"][1]["induction"] = [[0.1, 0.2]]
    with pytest.raises(IHLibError, match="'induction' must be"):
        training_dynamics(record)
    with pytest.raises(IHLibError, match="No training record"):
        read_training_dynamics(tmp_path)
    with pytest.raises(IHLibError, match="kind must be one of"):
        training_dynamics(synthetic_record()).scores("duplicate")


def test_phase_change_table_gives_each_kind_its_step_and_the_loss_there():
    """Induction passes halfway at step 200 (loss 4.0 there); shifting rises linearly from 0.1 to 0.9: step 200."""
    from ihlib.tools.dynamics import phase_change_table

    frame = phase_change_table(training_dynamics(synthetic_record()))
    assert frame["score"].tolist() == ["induction", "shifting"]
    assert frame["step past 50% of the rise"].tolist() == [200, 200]
    assert frame["loss at that step"].tolist() == [4.0, 4.0]
    assert frame.loc[0, "best head, last checkpoint"] == pytest.approx(0.82)


def test_checkpoints_inside_the_log_are_read_as_the_language_trainer_saves_them():
    """`ihlib.training.language_trainer` saves its checkpoints under `log`; they read the same as top-level ones."""
    record = synthetic_record()
    nested = {**record, "log": {**record["log"], "checkpoints": record.pop("checkpoints")}}
    np.testing.assert_array_equal(training_dynamics(nested).step, STEPS)
