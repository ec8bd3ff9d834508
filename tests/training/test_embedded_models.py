"""Every embedded model meets the targets set for it, measured with chapter 0's scoring (issues 2 and 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ihlib.core.copying import pred_probs
from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import head_scores
from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.loading import EMBEDDED_MODELS, load_model
from ihlib.training.language_trainer import config_from_record, evaluate


def test_every_embedded_model_is_listed_with_its_folder():
    assert set(EMBEDDED_MODELS) == {"ihlib-copy", "ihlib-language"}
    for folder in EMBEDDED_MODELS.values():
        assert (folder / "model.safetensors").stat().st_size < 20 * 1024**2
        assert "train_config" in json.loads((folder / "training.json").read_text())


def test_copy_model_has_ihs_and_earlier_shifting_heads_and_copies(copy_model):
    scores = head_scores(copy_model)
    table = head_table(scores)
    assert (scores.induction >= 0.5).sum() >= 2 and (scores.shifting >= 0.5).sum() >= 2
    assert np.nonzero(table.shifting)[0].min() < np.nonzero(table.induction)[0].max()
    ids = repeated_tokens(100, 25, copy_model.config.vocab_size, rep=2, seed=12345)
    _, errs = pred_probs(copy_model, ids, copy_positions(25, rep=2, burn_in=0))
    assert 1.0 - errs.mean() >= 0.9


@pytest.fixture(scope="module")
def language_report():
    record = json.loads((EMBEDDED_MODELS["ihlib-language"] / "training.json").read_text())
    return evaluate(load_model("ihlib-language", device="cpu"), config_from_record(record["train_config"]))


@pytest.fixture(scope="module")
def language_table(language_report):
    from ihlib.heads.scoring import HeadScores

    return head_table(HeadScores(language_report.induction, language_report.shifting))


def test_language_model_has_at_least_4_layers(language_table):
    assert language_table.neither.size >= 4


def test_language_model_has_shifting_heads_in_a_layer_before_some_ihs(language_table):
    ih_layers = np.nonzero(language_table.induction)[0]
    shift_layers = np.nonzero(language_table.shifting)[0]
    assert ih_layers.size and shift_layers.size and shift_layers.min() < ih_layers.max()


def test_language_model_has_a_third_of_its_heads_of_neither_kind(language_table):
    assert language_table.neither.sum() >= language_table.n_heads / 3


def test_language_model_copies_the_second_repeat_of_25_token_segments(language_report):
    assert language_report.copy_accuracy >= 0.9


def test_language_model_has_learned_its_language(language_report):
    assert language_report.bigram_entropy < language_report.unigram_entropy
    assert language_report.word_loss < 0.8 * language_report.unigram_entropy


def test_language_model_has_ihs_in_at_least_2_layers(language_table):
    assert np.count_nonzero(language_table.induction) >= 2


def test_language_model_layers_with_ihs_or_shifting_heads_hold_2_heads_of_neither_kind(language_table):
    busy = (language_table.induction + language_table.shifting) > 0
    assert (language_table.neither[busy] >= 2).all()


def test_language_model_retraining_defaults_are_the_shipped_recipe():
    """`python -m ihlib.training.language_trainer` (defaults, 1 thread) is what the shipped weights record."""
    from ihlib.training.language_trainer import LanguageTrainConfig

    record = json.loads((EMBEDDED_MODELS["ihlib-language"] / "training.json").read_text())
    assert config_from_record(record["train_config"]) == LanguageTrainConfig()
    assert record["threads"] == 1
