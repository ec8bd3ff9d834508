"""The trainer stays alive: batches repeat segments, a few steps run, and saving round-trips."""

from __future__ import annotations

import dataclasses
import json

import torch

from ihlib.models import load_model
from ihlib.train import TrainConfig, save, train, training_batch

TINY = dataclasses.replace(
    TrainConfig(), vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2, steps=8, batch_size=4, seq_len=32
)


def test_training_batches_repeat_their_segment_after_the_prefix():
    cfg = dataclasses.replace(TINY, min_seg=5, max_seg=5, max_prefix=0, batch_size=3)
    ids = training_batch(cfg, torch.Generator().manual_seed(0))
    assert ids.shape == (3, 32)
    assert torch.equal(ids[:, 5:], ids[:, :-5])


def test_a_few_training_steps_change_the_weights_and_save_round_trips(tmp_path):
    model, log = train(TINY, progress=False)
    assert len(log["losses"]) == 8 and all(l == l and l < 10 for l in log["losses"])
    torch.manual_seed(TINY.seed)
    untrained = type(model)._from_config(TINY.gpt2_config())
    assert not torch.equal(untrained.transformer.wte.weight, model.transformer.wte.weight)
    save(model, TINY, log, tmp_path)
    loaded = load_model(tmp_path, device="cpu")
    ids = torch.randint(0, 64, (2, 16))
    assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-6)
    assert json.loads((tmp_path / "training.json").read_text())["train_config"]["steps"] == 8
