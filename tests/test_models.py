"""Model loading: the embedded default, local directories, GPT2Model bodies and clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel

from ihlib.errors import ModelLoadError
from ihlib.models import DEFAULT_MODEL_DIR, load_model, model_label, transformer_of, unembedding
from ihlib.train import TrainConfig


def test_default_model_is_a_small_eager_gpt2_shipped_under_10_mb(default_model):
    assert isinstance(default_model, GPT2LMHeadModel)
    assert default_model.config._attn_implementation == "eager"
    assert not default_model.training
    size = (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size
    assert size < 10 * 1024**2
    assert model_label(default_model) == "ihlib-default"


def test_default_model_ships_its_training_configuration(default_model):
    record = json.loads((DEFAULT_MODEL_DIR / "training.json").read_text())
    cfg = record["train_config"]
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"]) == (
        default_model.config.n_layer,
        default_model.config.n_head,
        default_model.config.n_embd,
    )
    assert record["log"]["seconds"] < 20 * 60


def test_retraining_command_defaults_match_the_shipped_weights_configuration():
    record = json.loads((DEFAULT_MODEL_DIR / "training.json").read_text())
    assert record["train_config"] == dataclasses.asdict(TrainConfig())
    assert record["threads"] == 2


def test_local_directory_round_trip_gives_identical_weights(small_model, tmp_path):
    small_model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    saved = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    assert model_label(loaded) == str(tmp_path)


def test_unembedding_is_tied_wte_for_both_classes(small_model):
    assert torch.equal(unembedding(small_model), unembedding(small_model.transformer))
    assert transformer_of(small_model.transformer) is small_model.transformer


def test_other_modules_are_rejected_with_a_hint():
    with pytest.raises(TypeError, match="GPT2Model or GPT2LMHeadModel"):
        transformer_of(torch.nn.Linear(2, 2))


def test_missing_local_directory_names_the_model_and_the_way_out(tmp_path):
    with pytest.raises(ModelLoadError, match="load_model\\(None\\)") as err:
        load_model(tmp_path / "nowhere", device="cpu")
    assert "nowhere" in str(err.value)


def test_unknown_hub_model_offline_fails_fast_with_a_clear_message():
    code = "import ihlib\ntry:\n    ihlib.load_model('gpt2-xl')\nexcept ihlib.ModelLoadError as e:\n    print(e)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "Could not load model 'gpt2-xl'" in out
    assert "embedded default" in out and "save_pretrained(DIR)" in out
