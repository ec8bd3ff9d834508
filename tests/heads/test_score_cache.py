"""The head-score cache: off without its variable; keyed by the weights and the options; read back as computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_gpt2
from transformers import GPT2Config

from ihlib.heads import score_cache, scoring
from ihlib.heads.score_cache import CACHE_ENV, code_digest, entry_key, weights_digest
from ihlib.heads.scoring import SCORING_CODE, head_scores, scores_by_position
from ihlib.model import batches
from ihlib.model.loading import new_model


def test_without_the_variable_nothing_is_written(monkeypatch, tmp_path):
    """With IHLIB_SCORE_CACHE unset, scoring writes no file anywhere under the working folder."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    head_scores(random_gpt2(), batch_size=4, seg_len=5)
    assert list(tmp_path.iterdir()) == []


def test_cached_scores_equal_computed_ones_and_are_stored_once(monkeypatch, tmp_path):
    """The second call reads the one stored entry, and both calls give the scores computed without the cache."""
    model = random_gpt2()
    monkeypatch.delenv(CACHE_ENV, raising=False)
    plain = scores_by_position(model, batch_size=4, seg_len=5)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = scores_by_position(model, batch_size=4, seg_len=5)
    second = scores_by_position(model, batch_size=4, seg_len=5)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    for kind in ("induction", "shifting"):
        np.testing.assert_array_equal(getattr(first, kind), getattr(plain, kind))
        np.testing.assert_array_equal(getattr(second, kind), getattr(plain, kind))
    assert second.setting == plain.setting


def test_a_stored_entry_is_what_later_calls_return(monkeypatch, tmp_path):
    """Scores come from the file once it exists: overwriting the entry changes what head_scores returns."""
    model = random_gpt2()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    scores = scores_by_position(model, batch_size=4, seg_len=5)
    (entry,) = tmp_path.glob("*.npz")
    np.savez(entry, induction=np.zeros_like(scores.induction), shifting=np.ones_like(scores.shifting))
    again = head_scores(model, batch_size=4, seg_len=5)
    assert again.induction.max() == 0 and again.shifting.min() == 1


def test_other_weights_or_options_get_their_own_entry(monkeypatch, tmp_path):
    """A changed weight, seed or segment length each make a new entry; the same model and options do not."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    model = random_gpt2()
    head_scores(model, batch_size=4, seg_len=5)
    head_scores(model, batch_size=4, seg_len=5, seed=1)
    head_scores(model, batch_size=4, seg_len=6)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[0, 0] += 1e-3
    head_scores(model, batch_size=4, seg_len=5)
    head_scores(model, batch_size=4, seg_len=5)
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_the_weights_digest_sees_every_tensor_and_nothing_else():
    """Equal weights give equal digests (a fresh copy too); one changed bias gives another digest."""
    a, b = random_gpt2(seed=3), random_gpt2(seed=3)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.transformer.h[1].mlp.c_fc.bias[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)


def test_a_model_with_the_same_weights_and_another_configuration_gets_its_own_scores(monkeypatch, tmp_path):
    """`scale_attn_by_inverse_layer_idx=True` changes the scores, not the weights: it gets its own entry, with the
    scores computed for it, not the other model's."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    plain = random_gpt2(seed=5)
    config = GPT2Config(**{**plain.config.to_dict(), "scale_attn_by_inverse_layer_idx": True})
    scaled = new_model(config).eval()
    scaled.load_state_dict(plain.state_dict())
    assert weights_digest(plain) == weights_digest(scaled)
    first = scores_by_position(plain, batch_size=4, seg_len=5)
    second = scores_by_position(scaled, batch_size=4, seg_len=5)
    monkeypatch.delenv(CACHE_ENV)
    truth = scores_by_position(scaled, batch_size=4, seg_len=5)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_array_equal(second.induction, truth.induction)
    assert not np.allclose(first.induction[1:], second.induction[1:], equal_nan=True)


def test_the_key_covers_the_code_that_computes_the_entry():
    """Another version of the computing code (its digest) gives another key for the same model and settings."""
    model = random_gpt2()
    assert entry_key(model, "k", {"a": 1}, code="v1") == entry_key(model, "k", {"a": 1}, code="v1")
    assert entry_key(model, "k", {"a": 1}, code="v1") != entry_key(model, "k", {"a": 1}, code="v2")
    assert SCORING_CODE.startswith(code_digest(scoring.__file__, batches.__file__, score_cache.__file__))


def test_a_truncated_entry_is_recomputed_and_replaced_with_one_warning(monkeypatch, tmp_path):
    """A half-written entry (BadZipFile) or one missing an array is recomputed, rewritten, and said so once."""
    model = random_gpt2()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    good = scores_by_position(model, batch_size=4, seg_len=5)
    (entry,) = tmp_path.glob("*.npz")
    for damage in (entry.read_bytes()[:100], None):
        if damage is None:
            np.savez(entry, induction=good.induction)  # the shifting array is missing
        else:
            entry.write_bytes(damage)
        with pytest.warns(UserWarning, match=rf"Head-score cache entry {entry} was unreadable") as caught:
            again = scores_by_position(model, batch_size=4, seg_len=5)
        assert len(caught) == 1, [str(w.message) for w in caught]
        np.testing.assert_array_equal(again.induction, good.induction)
        with np.load(entry) as stored:
            assert sorted(stored.files) == ["induction", "shifting"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz") == [entry.name]  # no partial left
