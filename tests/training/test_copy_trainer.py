"""The trainer stays alive: batches repeat segments, a few steps run, and saving round-trips."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.loading import load_model
from ihlib.training.copy_trainer import TrainConfig, save, train, training_batch

TINY = dataclasses.replace(
    TrainConfig(),
    vocab_size=64,
    n_positions=32,
    n_embd=32,
    n_layer=2,
    n_head=2,
    steps=8,
    batch_size=4,
    seq_len=32,
    max_seg=12,
)


def test_training_batches_repeat_their_segment_after_the_prefix():
    cfg = dataclasses.replace(TINY, min_seg=5, max_seg=5, max_prefix=0, long_prefix_fraction=0.0, batch_size=3)
    ids, _ = training_batch(cfg, torch.Generator().manual_seed(0))
    assert ids.shape == (3, 32)
    assert torch.equal(ids[:, 5:], ids[:, :-5])


def test_the_loss_sees_only_tokens_that_repeat_an_earlier_copy():
    cfg = dataclasses.replace(TINY, min_seg=5, max_seg=5, max_prefix=0, long_prefix_fraction=0.0, batch_size=3)
    ids, labels = training_batch(cfg, torch.Generator().manual_seed(0))
    assert (labels[:, :5] == -100).all()
    assert torch.equal(labels[:, 5:], ids[:, 5:])
    _, plain = training_batch(dataclasses.replace(cfg, loss_on_repeats_only=False), torch.Generator().manual_seed(0))
    assert torch.equal(plain, ids)


def test_long_prefixes_start_the_first_copy_anywhere_that_leaves_room_for_a_second():
    cfg = dataclasses.replace(TINY, min_seg=6, max_seg=6, max_prefix=2, long_prefix_fraction=1.0, batch_size=400)
    ids, labels = training_batch(cfg, torch.Generator().manual_seed(0))
    prefix = (labels != -100).int().argmax(dim=1) - 6
    assert prefix.min() == 0 and prefix.max() == 32 - 2 * 6
    assert len(prefix.unique()) == 32 - 2 * 6 + 1
    for row, p in zip(ids, prefix.tolist(), strict=True):
        assert torch.equal(row[p + 6 :], row[p : 32 - 6])
    _, short = training_batch(dataclasses.replace(cfg, long_prefix_fraction=0.0), torch.Generator().manual_seed(0))
    assert ((short != -100).int().argmax(dim=1) - 6).max() <= 2


def test_segments_that_cannot_repeat_within_the_sequence_are_rejected():
    with pytest.raises(IHLibError, match="do not fit twice in seq_len=32"):
        dataclasses.replace(TINY, max_seg=14, max_prefix=8)


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
