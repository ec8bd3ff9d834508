"""Model loading: the embedded default, local directories, GPT2Model bodies and clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import random_gpt2
from safetensors.torch import load_file, save_file
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from ihlib.model.errors import ModelLoadError, ParameterError
from ihlib.model.loading import COPY_MODEL_DIR, load_model, model_label, resolve_device, transformer_of, unembedding
from ihlib.training.copy_trainer import TrainConfig


def test_copy_model_is_a_small_eager_gpt2_shipped_under_10_mb(copy_model):
    assert isinstance(copy_model, GPT2LMHeadModel)
    assert copy_model.config._attn_implementation == "eager"
    assert not copy_model.training
    size = (COPY_MODEL_DIR / "model.safetensors").stat().st_size
    assert size < 10 * 1024**2
    assert model_label(copy_model) == "ihlib-copy"


def test_copy_model_ships_its_training_configuration(copy_model):
    record = json.loads((COPY_MODEL_DIR / "training.json").read_text())
    cfg = record["train_config"]
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_embd"]) == (
        copy_model.config.n_layer,
        copy_model.config.n_head,
        copy_model.config.n_embd,
    )
    assert record["log"]["seconds"] < 20 * 60


def test_copy_model_retraining_defaults_match_the_shipped_weights_configuration():
    record = json.loads((COPY_MODEL_DIR / "training.json").read_text())
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


@pytest.fixture(scope="module")
def saved_small_gpt2(tmp_path_factory):
    """A directory holding a small random GPT-2 saved with `save_pretrained`."""
    folder = tmp_path_factory.mktemp("gpt2_small_random")
    random_gpt2().save_pretrained(folder)
    return folder


def edited_checkpoint(source, target, *, drop: str | None = None, add: str | None = None):
    """Copy the checkpoint in `source` to `target`, without tensor `drop` and with a zero tensor `add`."""
    shutil.copytree(source, target)
    tensors = {k: v for k, v in load_file(source / "model.safetensors").items() if k != drop}
    if add is not None:
        tensors[add] = torch.zeros(2)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.mark.parametrize(
    ("architecture", "model_type"),
    [
        (
            lambda: LlamaForCausalLM(
                LlamaConfig(
                    hidden_size=64,
                    intermediate_size=128,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    vocab_size=100,
                )
            ),
            "llama",
        ),
        (
            lambda: GPTNeoXForCausalLM(
                GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
            ),
            "gpt_neox",
        ),
    ],
)
def test_another_architecture_is_rejected_naming_it_and_gpt2(architecture, model_type, tmp_path):
    architecture().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=f"architecture {model_type!r}.*supports only GPT-2") as err:
        load_model(tmp_path, device="cpu")
    assert str(tmp_path) in str(err.value)


def test_a_gpt2_checkpoint_missing_a_tensor_is_rejected_naming_it(saved_small_gpt2, tmp_path):
    broken = edited_checkpoint(saved_small_gpt2, tmp_path / "broken", drop="transformer.h.1.attn.c_attn.weight")
    with pytest.raises(ModelLoadError, match=r"missing tensors: transformer\.h\.1\.attn\.c_attn\.weight"):
        load_model(broken, device="cpu")


def test_a_gpt2_checkpoint_with_an_unexpected_tensor_is_rejected_naming_it(saved_small_gpt2, tmp_path):
    extra = edited_checkpoint(saved_small_gpt2, tmp_path / "extra", add="transformer.h.0.attn.rotary.weight")
    with pytest.raises(ModelLoadError, match=r"unexpected tensors: transformer\.h\.0\.attn\.rotary\.weight"):
        load_model(extra, device="cpu")


def test_a_randomly_initialised_gpt2_small_directory_loads(tmp_path):
    GPT2LMHeadModel(GPT2Config()).save_pretrained(tmp_path)
    model = load_model(tmp_path, device="cpu")
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (12, 12, 768)
    assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)


def test_a_saved_gpt2model_body_loads_with_its_weights(small_model, tmp_path):
    small_model.transformer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    assert torch.equal(loaded.transformer.h[1].attn.c_attn.weight, small_model.transformer.h[1].attn.c_attn.weight)


def test_truncated_weights_name_the_file_and_the_fix(saved_small_gpt2, tmp_path):
    shutil.copytree(saved_small_gpt2, tmp_path / "cut")
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors.*truncated or corrupt.*save_pretrained"):
        load_model(tmp_path / "cut", device="cpu")


def test_a_file_instead_of_a_directory_names_the_directory_to_pass(saved_small_gpt2):
    with pytest.raises(ModelLoadError, match=r"is a file.*pass the directory that holds it") as err:
        load_model(saved_small_gpt2 / "model.safetensors", device="cpu")
    assert str(saved_small_gpt2) in str(err.value)


def test_a_directory_without_config_names_what_is_missing(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only torch")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_on_a_cpu_only_torch_is_a_parameter_error_naming_the_fix(device):
    with pytest.raises(ParameterError, match=r"device='cuda.*no CUDA.*device='auto' or device='cpu'"):
        load_model(None, device=device)


def test_an_unknown_device_is_a_parameter_error():
    with pytest.raises(ParameterError, match=r"device='gpu0'.*'auto', 'cpu' or 'cuda\[:N\]'"):
        resolve_device("gpu0")


def test_load_model_without_a_name_gives_the_embedded_language_model():
    """`load_model()` and "ihlib-default" load `ihlib-language`; the copy model stays loadable by its short name."""
    assert model_label(load_model(device="cpu")) == "ihlib-language"
    assert model_label(load_model("ihlib-default", device="cpu")) == "ihlib-language"
    assert model_label(load_model("ihlib-copy", device="cpu")) == "ihlib-copy"
