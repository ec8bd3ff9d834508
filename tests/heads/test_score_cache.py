"""The head-score cache: off without its variable; keyed by the weights and the options; read back as computed."""

from __future__ import annotations

import numpy as np
import torch
from conftest import random_gpt2

from ihlib.heads.score_cache import CACHE_ENV, weights_digest
from ihlib.heads.scoring import head_scores, scores_by_position


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
