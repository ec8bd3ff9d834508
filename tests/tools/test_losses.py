"""Per-position loss on repeated tokens: batched path against a per-sequence loop, bootstrap against a loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.tools.losses import bootstrap_mean_interval, position_loss, target_log_probs


def test_target_log_probs_equal_cross_entropy_of_each_sequence(small_model):
    """Log-probabilities and top-1 hits equal `F.cross_entropy` and `argmax` of the LM head, sequence by sequence."""
    ids = repeated_tokens(5, 6, 97, rep=3, seed=2)
    log_p, top1 = target_log_probs(small_model, ids, chunk_size=2)
    assert log_p.shape == top1.shape == (5, 17)
    for i in range(5):
        with torch.no_grad():
            logits = small_model(ids[i : i + 1]).logits[0, :-1]
        expected = -F.cross_entropy(logits, ids[i, 1:], reduction="none")
        torch.testing.assert_close(log_p[i], expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(top1[i], logits.argmax(-1) == ids[i, 1:])


def test_bootstrap_interval_equals_a_loop_over_resamples():
    """The vectorised percentile bootstrap equals a loop drawing the same indices, and brackets the mean."""
    values = np.random.default_rng(3).normal(size=(30, 4))
    low, high = bootstrap_mean_interval(values, n_boot=200, level=0.9, seed=7)
    rng = np.random.default_rng(7)
    draws = rng.integers(0, 30, size=(200, 30))
    means = np.stack([values[d].mean(axis=0) for d in draws])
    np.testing.assert_allclose(low, np.quantile(means, 0.05, axis=0))
    np.testing.assert_allclose(high, np.quantile(means, 0.95, axis=0))
    assert np.all(low < values.mean(0)) and np.all(values.mean(0) < high)


def test_position_loss_with_bos_assigns_positions_to_repeats(small_model):
    """With a BOS token, query 0 predicts the first segment token: repeat indices run 0 (seg_len times), 1, 2."""
    result = position_loss(small_model, seg_len=4, rep=3, batch_size=6, bos_token_id=0, n_boot=50)
    assert result.loss.shape == (12,)
    np.testing.assert_array_equal(result.repeat_of_position(), np.repeat([0, 1, 2], 4))
    np.testing.assert_allclose(result.by_repeat(), result.loss.reshape(3, 4).mean(axis=1))
    assert result.uniform_loss == pytest.approx(np.log(97))


def test_bad_arguments_raise_ihlib_errors(small_model):
    """Sequences longer than the context, and a level outside (0, 1), name the argument and the range."""
    with pytest.raises(IHLibError, match="context of 64"):
        position_loss(small_model, seg_len=30, rep=3)
    with pytest.raises(IHLibError, match="level"):
        bootstrap_mean_interval(np.zeros((3, 2)), level=1.5)


def test_the_copy_models_loss_drops_on_the_second_repeat(copy_model):
    """Embedded model: above ln(512) = 6.24 on the first repeat (measured 7.5), 0.26 on the second, 0.01 on the third.

    The second repeat's mean includes its first token, which follows an unseen bigram and cannot be copied.
    """
    result = position_loss(copy_model, n_boot=200)
    first, second, third = result.by_repeat()
    assert first > 6.0
    assert second < 0.4 and third < 0.05
    assert np.all(result.low <= result.loss) and np.all(result.loss <= result.high)


def test_by_repeat_table_matches_by_repeat_and_brackets_each_mean(small_model):
    """One row per repeat, means equal to `by_repeat`, token counts summing to T - 1, intervals around the means."""
    result = position_loss(small_model, seg_len=5, rep=3, batch_size=8, n_boot=100)
    frame = result.by_repeat_table(n_boot=100)
    assert frame["repeat"].tolist() == [1, 2, 3]
    assert frame["tokens predicted"].tolist() == [4, 5, 5]
    np.testing.assert_allclose(frame["mean loss (nats)"], result.by_repeat())
    for text, mean in zip(frame["95% interval"], frame["mean loss (nats)"], strict=True):
        low, high = (float(part) for part in text.split(" to "))
        assert low <= round(mean, 3) <= high


def test_position_loss_saves_as_a_result(small_model, tmp_path):
    """`save_result` writes the per-position arrays and a record with the per-repeat means."""
    from ihlib.report.saving import save_result

    result = position_loss(small_model, seg_len=4, rep=2, batch_size=3, n_boot=20)
    paths = save_result(result, tmp_path)
    with np.load(paths["npz"]) as saved:
        np.testing.assert_array_equal(saved["per_sequence"], result.per_sequence)
    assert paths["json"].name == "position_loss.json"
    assert result.record()["by_repeat"] == pytest.approx(result.by_repeat().tolist())
