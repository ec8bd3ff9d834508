"""The synthetic language: seeded, tokens of the kinds it says, recurring names, repeated spans, entropies."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.loading import new_model
from ihlib.training.language_trainer import LanguageTrainConfig, evaluate, mixed_batch_loss, train_language
from ihlib.training.synthetic_language import (
    COPIED,
    NAME_FIRST,
    NAME_LAST,
    WORD,
    LanguageConfig,
    SyntheticLanguage,
    word_entropies,
)

SMALL = LanguageConfig(vocab_size=64, n_names=16, n_topics=2, successors=3, min_copy=4, max_copy=8)


def sample(cfg: LanguageConfig = SMALL, n: int = 50, seq_len: int = 40, seed: int = 0):
    return SyntheticLanguage(cfg).sample(n, seq_len, np.random.default_rng(seed))


def test_the_same_seeds_give_the_same_documents_and_other_seeds_do_not():
    assert np.array_equal(sample().ids, sample().ids)
    assert not np.array_equal(sample().ids, sample(seed=1).ids)
    other_language = dataclasses.replace(SMALL, seed=7)
    assert not np.array_equal(sample().ids, sample(other_language).ids)


def test_words_are_below_the_names_and_names_come_as_first_then_last_part():
    batch = sample(dataclasses.replace(SMALL, copy_rate=0.0))
    ids, kinds = batch.ids, batch.kinds
    assert ids.min() >= 0 and ids.max() < SMALL.vocab_size
    assert (ids[kinds == WORD] < SMALL.n_words).all()
    assert (ids[kinds != WORD] >= SMALL.n_words).all()
    first_rows, first_cols = np.nonzero(kinds[:, :-1] == NAME_FIRST)
    assert (kinds[first_rows, first_cols + 1] == NAME_LAST).all()
    assert first_cols.size > 0


def test_each_document_uses_at_most_names_per_doc_names_which_recur():
    batch = sample(dataclasses.replace(SMALL, copy_rate=0.0, name_rate=0.3), seq_len=80)
    recurring = 0
    for ids, kinds in zip(batch.ids, batch.kinds, strict=True):
        cols = np.nonzero(kinds[:-1] == NAME_FIRST)[0]
        names = Counter(zip(ids[cols], ids[cols + 1], strict=True))
        assert len(names) <= SMALL.names_per_doc
        recurring += any(count > 1 for count in names.values())
    assert recurring > len(batch.ids) / 2


def test_copied_spans_repeat_an_earlier_span_of_the_document():
    batch = sample(dataclasses.replace(SMALL, copy_rate=1.0))
    for ids, kinds in zip(batch.ids, batch.kinds, strict=True):
        cols = np.nonzero(kinds == COPIED)[0]
        span, target = cols.size, cols[0]
        assert SMALL.min_copy <= span <= SMALL.max_copy and np.array_equal(cols, np.arange(target, target + span))
        sources = [s for s in range(0, target - span + 1) if np.array_equal(ids[s : s + span], ids[cols])]
        assert sources


def test_word_entropies_match_a_direct_count():
    batch = sample(n=20, seq_len=30)
    ent = word_entropies(batch)
    words = Counter(batch.ids[batch.kinds == WORD].tolist())
    total = sum(words.values())
    assert ent.unigram == pytest.approx(-sum(c / total * math.log(c / total) for c in words.values()), rel=1e-12)
    pairs, prev = Counter(), Counter()
    for ids, kinds in zip(batch.ids, batch.kinds, strict=True):
        for t in range(1, len(ids)):
            if kinds[t] == WORD:
                pairs[(ids[t - 1], ids[t])] += 1
                prev[ids[t - 1]] += 1
    n = sum(pairs.values())
    conditional = -sum(c / n * math.log(c / prev[a]) for (a, _), c in pairs.items())
    assert ent.bigram == pytest.approx(conditional, rel=1e-12)
    assert ent.bigram < ent.unigram


def test_bad_language_shapes_are_rejected_by_name():
    with pytest.raises(IHLibError, match="n_names"):
        LanguageConfig(vocab_size=64, n_names=64)
    with pytest.raises(IHLibError, match="name_rate"):
        LanguageConfig(name_rate=1.5)
    with pytest.raises(IHLibError, match="language.vocab_size"):
        LanguageTrainConfig(vocab_size=256)


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
    copy_only_steps=2,
    checkpoint_every=3,
    copy_fraction=0.25,
    copy_heads=None,
    all_heads_copy_from=None,
    silence_phases=(),
    language=SMALL,
)


def test_copy_only_steps_use_the_copy_task_alone_then_the_mix_adds_documents():
    model = new_model(TINY.gpt2_config())
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    language = SyntheticLanguage(SMALL)
    copy_only = mixed_batch_loss(model, TINY, language, 0, gen, rng)
    mixed = mixed_batch_loss(model, TINY, language, 5, gen, rng)
    assert math.log(64) * 0.8 < copy_only.item() < math.log(64) * 1.2
    assert math.log(64) * 1.6 < mixed.item() < math.log(64) * 2.4


def test_training_records_head_scores_at_each_checkpoint():
    _, log = train_language(TINY, progress=False)
    assert [c["step"] for c in log["checkpoints"]] == [0, 3, 6]
    first = log["checkpoints"][0]
    assert np.asarray(first["induction"]).shape == (2, 2) and np.asarray(first["shifting"]).shape == (2, 2)
    assert len(log["losses"]) == 6


def test_two_seeded_runs_give_bitwise_identical_weights():
    first, _ = train_language(TINY, progress=False)
    second, _ = train_language(TINY, progress=False)
    other, _ = train_language(dataclasses.replace(TINY, seed=1), progress=False)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not torch.equal(first.transformer.wte.weight, other.transformer.wte.weight)


def test_the_evaluation_record_counts_every_head_once_per_layer():
    model, _ = train_language(TINY, progress=False)
    record = evaluate(model, TINY, n_docs=5).record()
    assert [row["layer"] for row in record["head_kinds"]] == [0, 1]
    for row in record["head_kinds"]:
        assert row["neither"] + max(row["induction"], row["shifting"]) <= 2
    assert 0.0 <= record["copy_accuracy"] <= 1.0 and record["bigram_entropy"] < record["unigram_entropy"]


def test_silenced_heads_are_heads_past_copy_heads_and_the_layers_of_the_current_phase():
    """`copy_heads=1` silences head 1 of each layer; `silence_phases` adds, from each phase's first step, the layer
    set of its cycle at `step % len(cycle)`."""
    cfg = dataclasses.replace(TINY, copy_heads=1, silence_phases=((0, ((1,),)), (2, ((0,), (1,)))))
    assert [cfg.copy_row_silenced_heads(step) for step in (0, 1, 2, 3)] == [
        [(0, 1), (1, 0), (1, 1)],
        [(0, 1), (1, 0), (1, 1)],
        [(0, 0), (0, 1), (1, 1)],
        [(0, 1), (1, 0), (1, 1)],
    ]
    assert TINY.copy_row_silenced_heads(0) == []
    with pytest.raises(IHLibError, match="copy_heads=3"):
        dataclasses.replace(TINY, copy_heads=3)
    with pytest.raises(IHLibError, match="silence_phases"):
        dataclasses.replace(TINY, silence_phases=((0, ((2,),)),))
    with pytest.raises(IHLibError, match="silence_phases"):
        dataclasses.replace(TINY, silence_phases=((0, ()),))


def test_the_three_phase_curriculum_silences_the_layers_it_names():
    """The sweep's three phases: heads 4-7 off until step 3,250; layers 2 and 3 in turn, then 1, then 1 and 2-3."""
    cfg = LanguageTrainConfig(
        copy_heads=4,
        all_heads_copy_from=3250,
        silence_phases=((0, ((2,), (3,))), (750, ((1,),)), (2250, ((1,), (2, 3)))),
    )
    off = [
        sorted({layer for layer, head in cfg.copy_row_silenced_heads(step) if head < 4})
        for step in (0, 1, 750, 2250, 2251)
    ]
    assert off == [[2], [3], [1], [1], [2, 3]]
    assert all(head >= 4 for layer, head in cfg.copy_row_silenced_heads(0) if layer in (0, 1))
    heads_4_to_7 = {(layer, head) for layer in range(4) for head in range(4, 8)}
    assert set(cfg.copy_row_silenced_heads(3249)) == heads_4_to_7 | {(layer, h) for layer in (2, 3) for h in range(4)}
    assert cfg.copy_row_silenced_heads(3250) == [(1, head) for head in range(8)]  # every head back, layer 1 off


def test_the_shipped_recipe_follows_the_schedule_in_the_readme():
    """Defaults: heads 0-3 with layer 2 or 3 off, then layer 1 off, then layer 1 or 2-3 off, then all heads from 2,750;
    documents in half of each batch from step 2,250."""
    cfg = LanguageTrainConfig()
    heads_4_to_7 = {(layer, head) for layer in range(4) for head in range(4, 8)}

    def off(step: int) -> set[tuple[int, int]]:
        return set(cfg.copy_row_silenced_heads(step)) - heads_4_to_7

    def layer(*layers: int) -> set[tuple[int, int]]:
        return {(index, head) for index in layers for head in range(4)}

    assert [off(step) for step in (0, 1, 749, 750, 2249, 2250, 2251, 2749)] == [
        layer(2),
        layer(3),
        layer(3),
        layer(1),
        layer(1),
        layer(1),
        layer(2, 3),
        layer(2, 3),
    ]
    assert heads_4_to_7 <= set(cfg.copy_row_silenced_heads(2749))
    assert cfg.copy_row_silenced_heads(2750) == cfg.copy_row_silenced_heads(3999) == []
    assert (cfg.copy_only_steps, cfg.n_copy_rows, cfg.batch_size, cfg.steps) == (2250, 16, 32, 4000)


def head_grad_norms(model, cfg: LanguageTrainConfig, step: int) -> np.ndarray:
    """Norm of the copy-task gradient on each head's query, key and value columns of `c_attn`: `(n_layer, n_head)`."""
    model.zero_grad()
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    mixed_batch_loss(model, cfg, SyntheticLanguage(SMALL), step, gen, rng).backward()
    d_head = cfg.n_embd // cfg.n_head
    norms = np.zeros((cfg.n_layer, cfg.n_head))
    for layer, block in enumerate(model.transformer.h):
        grad = block.attn.c_attn.weight.grad.unflatten(1, (3, cfg.n_head, d_head))  # (d_model, qkv, head, d_head)
        norms[layer] = grad.pow(2).sum(dim=(0, 1, 3)).sqrt().numpy()
    return norms


def test_copy_rows_train_only_the_heads_that_are_not_silenced():
    """In the copy-only phase, silenced heads get exactly no gradient on their Q, K and V; the others get some."""
    cfg = dataclasses.replace(TINY, copy_heads=1, silence_phases=((0, ((0,), (1,))),))
    model = new_model(cfg.gpt2_config())
    norms = head_grad_norms(model, cfg, step=0)
    silenced = cfg.copy_row_silenced_heads(0)
    assert all(norms[layer, head] == 0.0 for layer, head in silenced)
    assert norms[1, 0] > 0.0


def test_detached_heads_run_forward_but_get_no_copy_gradient():
    """`other_heads="detached"`: heads past `copy_heads` keep the copy rows' loss unchanged but get zero gradient."""
    cfg = dataclasses.replace(TINY, copy_heads=1, other_heads="detached")
    model = new_model(cfg.gpt2_config())
    assert cfg.copy_row_silenced_heads(0) == [] and cfg.copy_row_detached_heads(0) == [(0, 1), (1, 1)]
    norms = head_grad_norms(model, cfg, step=0)
    assert norms[0, 1] == 0.0 and norms[1, 1] == 0.0 and norms[0, 0] > 0.0 and norms[1, 0] > 0.0
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    plain = mixed_batch_loss(model, TINY, SyntheticLanguage(SMALL), 0, gen, rng)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    detached = mixed_batch_loss(model, cfg, SyntheticLanguage(SMALL), 0, gen, rng)
    assert torch.equal(plain, detached)


def test_a_silenced_layer_zeroes_its_heads_even_where_they_would_be_detached():
    cfg = dataclasses.replace(TINY, copy_heads=1, other_heads="detached", silence_phases=((0, ((1,),)),))
    assert cfg.copy_row_silenced_heads(0) == [(1, 0), (1, 1)] and cfg.copy_row_detached_heads(0) == [(0, 1)]
    with pytest.raises(IHLibError, match="other_heads"):
        dataclasses.replace(TINY, other_heads="frozen")


def test_copy_weight_scales_the_copy_rows_of_mixed_batches_only():
    model = new_model(TINY.gpt2_config())
    heavy = dataclasses.replace(TINY, copy_weight=3.0)

    def loss(cfg, step):
        rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
        return mixed_batch_loss(model, cfg, SyntheticLanguage(SMALL), step, gen, rng).item()

    assert loss(heavy, 0) == loss(TINY, 0)
    assert loss(heavy, 5) - loss(TINY, 5) > 2 * 0.8 * math.log(64)  # twice the copy row's loss, about ln 64
