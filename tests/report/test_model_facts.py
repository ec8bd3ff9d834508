"""Model facts: where a model's training record lives, what it trained on, head roles per layer, the seed table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ihlib.heads.scoring import HeadScores, ScoreSetting
from ihlib.heads.selection import head_role
from ihlib.model.loading import DEFAULT_MODEL_DIR, EMBEDDED_MODELS
from ihlib.report.model_facts import (
    copy_accuracy,
    embedded_models,
    facts_table,
    model_facts,
    model_folder,
    roles_by_layer,
    roles_table,
    seed_comparison,
    trained_on,
    training_dynamics_of,
    training_record,
)
from ihlib.report.seed_gpt2 import SEED_GPT2_TOP
from ihlib.report.table_style import table


def record_with_checkpoints() -> dict:
    """Three checkpoints of a 1-layer, 2-head model in the trainer's format."""
    scores = [[0.1, 0.2]]
    return {"checkpoints": [{"step": s, "loss": 1.0, "induction": scores, "shifting": scores} for s in (0, 50, 100)]}


def test_model_folder_resolves_embedded_names_and_directories_but_not_hub_names(tmp_path):
    """None and "ihlib-copy" give the embedded folder, a directory itself, and a hub name or missing path None."""
    assert model_folder(None) == DEFAULT_MODEL_DIR
    assert model_folder("ihlib-copy") == EMBEDDED_MODELS["ihlib-copy"]
    assert model_folder(tmp_path) == tmp_path
    assert model_folder("gpt2") is None
    assert model_folder(tmp_path / "absent") is None


def test_training_record_reads_the_folder_record_or_returns_none(tmp_path):
    """Each embedded model's record has its train_config; a folder without training.json and a hub name give None."""
    assert training_record(None)["train_config"]["n_layer"] == 4
    assert training_record("ihlib-copy")["train_config"]["n_layer"] == 3
    assert training_record(tmp_path) is None
    assert training_record("gpt2") is None


def test_training_dynamics_of_a_folder_with_checkpoints(tmp_path):
    """A record with checkpoints gives the dynamics and a sentence naming the checkpoint steps."""
    (tmp_path / "training.json").write_text(json.dumps(record_with_checkpoints()))
    dynamics, note = training_dynamics_of(tmp_path)
    np.testing.assert_array_equal(dynamics.step, [0, 50, 100])
    assert "3 checkpoints from step 0 to 100" in note


def test_training_dynamics_of_models_without_checkpoints_is_none_with_a_reason(tmp_path):
    """The copy model records no checkpoints and a hub model has no record: None and a reason, no exception."""
    dynamics, note = training_dynamics_of("ihlib-copy")
    assert dynamics is None and "no checkpoints" in note
    dynamics, note = training_dynamics_of("gpt2")
    assert dynamics is None and "no training record" in note


def test_trained_on_tells_the_copy_task_from_the_language():
    """A record without a `language` config is the copy task; with one, the language plus the copy rows' share."""
    copy = trained_on({"train_config": {"min_seg": 4, "max_seg": 30, "loss_on_repeats_only": True}})
    assert copy == "random segments of 4-30 tokens repeated, loss on the repeats only"
    language = trained_on({"train_config": {"min_seg": 4, "max_seg": 30, "language": {}, "copy_fraction": 0.25}})
    assert language.startswith("a synthetic language") and "25% rows of random segments" in language


def test_roles_by_layer_counts_every_head_once_and_agrees_with_head_role():
    """Each layer's role counts sum to n_head, and the counts equal `head_role` applied head by head."""
    rng = np.random.default_rng(0)
    induction, shifting = rng.uniform(0, 0.05, (3, 4)), rng.uniform(0, 0.05, (3, 4))
    induction[2, [0, 3]] = 0.9
    shifting[0, 1] = 0.95
    scores = HeadScores(induction, shifting, ScoreSetting())
    frame = roles_by_layer(scores)
    assert frame[["induction head", "shifting head", "both", "neither"]].sum(axis=1).tolist() == [4, 4, 4]
    expected = [sum(head_role(scores, 2, h) == "induction head" for h in range(4))]
    assert frame.loc[frame.layer == 2, "induction head"].tolist() == expected == [2]
    assert frame.loc[0, "induction / shifting heads"] == "L0H1"


def test_seed_comparison_quotes_the_seed_first_and_marks_it_as_printed():
    """The first row holds the seed's printed GPT-2 heads as printed; each scored model follows with its heads."""
    induction, shifting = np.zeros((2, 2)), np.zeros((2, 2))
    induction[1, 0], shifting[0, 1] = 0.8, 0.9
    frame = seed_comparison({"tiny": HeadScores(induction, shifting, ScoreSetting(seg_len=5, rep=3))}, n=1)
    assert frame["model"].tolist() == ["GPT-2 small", "tiny"]
    assert "printed by the seed" in frame.loc[0, "source"] and "not recomputed" in frame.loc[0, "source"]
    (layer, head), score = SEED_GPT2_TOP["induction"][0]
    assert frame.loc[0, "top induction heads"] == f"L{layer}H{head} {score:.3f}" == "L5H1 0.995"
    assert frame.loc[1, "top induction heads"] == "L1H0 0.800"
    assert frame.loc[1, "top shifting heads"] == "L0H1 0.900"


def test_copy_accuracy_of_the_copy_model_is_at_the_ceiling(copy_model):
    """The copy model copies the second repeat of 25-token segments almost perfectly (top-1 >= 0.95)."""
    assert copy_accuracy(copy_model, batch_size=20) >= 0.95


def test_embedded_models_lists_a_folder_without_weights_as_missing(tmp_path, monkeypatch):
    """A registered embedded model whose folder holds no weights is reported missing, the shipped one present."""
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / "config.json", empty / "config.json")
    monkeypatch.setitem(EMBEDDED_MODELS, "ihlib-empty", empty)
    present, missing = embedded_models()
    assert "ihlib-copy" in present
    assert "ihlib-empty" in missing and "ihlib-empty" not in present


def test_table_drops_the_pandas_index_and_keeps_named_index_levels_as_columns():
    """A named index becomes the first column and no row header (<th> in the body) is rendered."""
    frame = pd.DataFrame({"rank": [1, 2], "score": [0.12345, 0.5]}).set_index("rank")
    html = table(frame).to_html()
    body = html.split("<tbody>")[1]
    assert "<th" not in body
    assert ">rank<" in html and "0.123" in html and "0.12345" not in html
    unnamed = table(pd.DataFrame({"a": [1.0]}, index=[7])).to_html()
    assert ">7<" not in unnamed.split("<tbody>")[1]


def test_model_facts_of_the_copy_model_read_its_record_and_score_it_in_both_settings():
    """The copy model's facts: 3 x 8 heads, steps and minutes from training.json, scores at 25 and at 5 tokens."""
    facts = model_facts("ihlib-copy", batch_size=4)
    record = training_record("ihlib-copy")
    assert (facts.n_layer, facts.n_head, facts.vocab_size) == (3, 8, 512)
    assert facts.steps == record["train_config"]["steps"]
    assert facts.train_minutes == pytest.approx(record["log"]["seconds"] / 60)
    assert facts.scores.setting.seg_len == 25 and facts.seed_setting_scores.setting.seg_len == 5
    table = facts_table([facts])
    assert table.columns.tolist() == ["", "ihlib-copy"]
    assert table.set_index("").loc["layers x heads", "ihlib-copy"] == "3 x 8"
    roles = roles_table([facts])
    assert roles["model"].tolist() == ["ihlib-copy"] * 3 and roles.columns[0] == "model"


def test_language_loss_text_reads_the_records_evaluation():
    """The language model's held-out word loss is shown beside both entropies; a copy model has no language."""
    facts = model_facts("ihlib-copy", batch_size=2)
    assert facts.language_loss_text() == "no language"
    facts.evaluation = {"word_loss": 2.5004, "unigram_entropy": 4.4674, "bigram_entropy": 3.0237}
    assert facts.language_loss_text() == "2.50 (4.47 / 3.02)"
