"""Intervention experiments: unedited = direct computation, edits = slow one-by-one reference; statistics, files."""

from __future__ import annotations

import copy
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib.data import copy_positions
from ihlib.edits import exchange_pairs, projection_edit
from ihlib.errors import IHLibError
from ihlib.experiments import (
    InterventionResult,
    common_subspace,
    condition_summary,
    copying_batches,
    decisive_rank,
    head_role,
    intact_heads,
    kind_threshold,
    kind_thresholds,
    mean_ci,
    project_exp,
    projection_table,
    projection_verdicts,
    repetition_table,
    selection_table,
    shuffle_exp,
    shuffle_sweep,
    shuffle_table,
    shuffle_verdicts,
    stacked_qk_svd,
    strong_heads,
    summary_rows,
    t_quantile,
    top_heads,
)
from ihlib.metrics import pred_probs
from ihlib.models import transformer_of
from ihlib.plots_experiments import plot_repetitions, plot_stack_energy
from ihlib.scoring import HeadScores, head_scores
from ihlib.weights import head_weights, qk

pytestmark = pytest.mark.filterwarnings("ignore:.*(score >= |with replacement).*:UserWarning")

SEG, VOCAB, BATCH = 6, 97, 4
HEADS = [[1, 0], [1, 2], [2, 1], [2, 3], [0, 3]]


@pytest.fixture(autouse=True)
def close_figures():
    """Close the figures each experiment returns."""
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model():
    """A 3-layer, 4-head random GPT-2 (d_model 32, d_head 8) with non-zero biases."""
    return random_gpt2(n_layer=3, n_head=4, seed=7)


@pytest.fixture(scope="module")
def fake_scores():
    """Scores where exactly heads L1H0 and L1H2 count as induction heads and L0H3 as a shifting head."""
    induction, shifting = np.zeros((3, 4)), np.zeros((3, 4))
    induction[1, 0], induction[1, 2], shifting[0, 3] = 0.9, 0.7, 0.8
    return HeadScores(induction, shifting)


def direct_probs_errs(model: torch.nn.Module, ids: torch.Tensor, positions: np.ndarray) -> tuple:
    """P(next token) and top-1 error read off the full LM logits with explicit loops (the obvious way)."""
    with torch.no_grad():
        logits = model(ids).logits.double()
    p = torch.softmax(logits, -1)
    probs = [[p[b, t, ids[b, t + 1]].item() for t in positions] for b in range(len(ids))]
    errs = [[float(logits[b, t].argmax() != ids[b, t + 1]) for t in positions] for b in range(len(ids))]
    return np.array(probs), np.array(errs)


def slow_edited_copy(model: torch.nn.Module, pairs: list, component: str) -> torch.nn.Module:
    """Deep copy with each target head's component replaced by its source's (weights and q|k|v biases)."""
    edited = copy.deepcopy(model)
    d, dh = model.config.n_embd, model.config.n_embd // model.config.n_head
    for (lt, ht), (ls, hs) in pairs:
        src, dst = model.transformer.h[ls].attn, edited.transformer.h[lt].attn
        for part in (0, 1) if component == "QK" else (2,):
            t, s = (
                slice(part * d + ht * dh, part * d + (ht + 1) * dh),
                slice(part * d + hs * dh, part * d + (hs + 1) * dh),
            )
            dst.c_attn.weight.data[:, t] = src.c_attn.weight.data[:, s]
            dst.c_attn.bias.data[t] = src.c_attn.bias.data[s]
        if component == "OV":
            dst.c_proj.weight.data[ht * dh : (ht + 1) * dh] = src.c_proj.weight.data[hs * dh : (hs + 1) * dh]
    return edited


def test_t_quantile_matches_tabulated_values():
    for df, expected in [(1, 12.7062), (4, 2.7764), (9, 2.2622), (29, 2.0452), (1000, 1.9623)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)


def test_mean_ci_is_the_t_interval_and_nan_for_one_value():
    stats = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 3.1824 * np.std([1, 2, 3, 4], ddof=1) / 2  # t_{0.975} with 3 degrees of freedom
    assert stats["mean"] == 2.5
    assert stats["high"] - stats["mean"] == pytest.approx(half, abs=1e-3)
    assert np.isnan(mean_ci(np.array([[1.0], [2.0]]))["low"]).all()


@pytest.mark.parametrize("heads", [[[1, 0]], [[1, 0], [2, 3], [0, 1], [2, 2], [1, 1]]])
def test_factored_stack_svd_equals_the_dense_svd(model, heads):
    W = head_weights(model)
    dense = torch.cat([qk(W.double(), l, h) for l, h in heads])
    _, S_dense, Vh = torch.linalg.svd(dense, full_matrices=False)
    S, V = stacked_qk_svd(W, heads)
    m = V.shape[1]
    assert m == min(32, 8 * len(heads))
    torch.testing.assert_close(S, S_dense[:m], rtol=1e-6, atol=1e-9)
    r = min(5, m)
    P_fast = common_subspace(W, heads, r) @ common_subspace(W, heads, r).T
    torch.testing.assert_close(P_fast, Vh[:r].T @ Vh[:r], rtol=1e-6, atol=1e-8)


def test_unedited_condition_equals_a_direct_computation(model, fake_scores):
    probs, errs = shuffle_exp(
        model,
        model.config,
        SEG,
        VOCAB,
        HEADS,
        None,
        n_exp=2,
        batch_size=BATCH,
        seed=3,
        scores=fake_scores,
        progress=False,
    )
    positions = copy_positions(SEG, 3, burn_in=4)
    for r, ids in enumerate(copying_batches(2, BATCH, SEG, VOCAB, seed=3)):
        p, e = direct_probs_errs(model, ids, positions)
        np.testing.assert_allclose(probs["original"][r], p, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(errs["original"][r], e)


@pytest.mark.parametrize("component", ["QK", "OV"])
def test_edited_conditions_equal_a_slowly_edited_deep_copy(model, fake_scores, component):
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = shuffle_exp(
        model,
        model.config,
        SEG,
        VOCAB,
        HEADS,
        None,
        component=component,
        n_exp=2,
        batch_size=BATCH,
        seed=4,
        scores=fake_scores,
        progress=False,
    )
    positions = copy_positions(SEG, 3, burn_in=4)
    batches = copying_batches(2, BATCH, SEG, VOCAB, seed=4)
    for c, kind in enumerate(["shuffle", "random baseline"]):
        for r, ids in enumerate(batches):
            pairs = exchange_pairs(model, HEADS, kind, np.random.default_rng([4, r, len(HEADS), c]))
            assert pairs == result.record["pairs"][kind][r]
            p, e = direct_probs_errs(slow_edited_copy(model, pairs, component), ids, positions)
            np.testing.assert_allclose(result.probs[kind][r], p, rtol=1e-4, atol=1e-6)
            assert np.mean(result.errs[kind][r] != e) < 0.02  # argmax ties may flip in float32
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_gpt2model_body_gives_the_same_numbers_as_the_lm_model(model, fake_scores):
    kwargs = dict(n_exp=1, batch_size=BATCH, scores=fake_scores, progress=False)
    lm = shuffle_exp(model, model.config, SEG, VOCAB, HEADS, None, **kwargs)
    body = shuffle_exp(transformer_of(model), model.config, SEG, VOCAB, HEADS, None, **kwargs)
    for condition in lm.probs:
        np.testing.assert_allclose(lm.probs[condition], body.probs[condition], rtol=1e-5, atol=1e-7)


def test_summary_is_the_mean_and_t_interval_of_per_repetition_means(model, fake_scores):
    result = shuffle_exp(
        model, None, SEG, VOCAB, HEADS, None, n_exp=3, batch_size=BATCH, scores=fake_scores, progress=False
    )
    per_rep = result.errs["random baseline"].mean(axis=(1, 2))
    stats = result.record["summary"]["random baseline"]["err"]
    assert stats["mean"] == pytest.approx(per_rep.mean())
    half = t_quantile(0.975, 2) * per_rep.std(ddof=1) / np.sqrt(3)
    assert stats["high"] == pytest.approx(per_rep.mean() + half)
    change = result.record["summary"]["shuffle"]["err_change"]["mean"]
    assert change == pytest.approx((result.errs["shuffle"] - result.errs["original"]).mean())


def test_k_beyond_the_scored_heads_runs_and_says_how_many_are_real(model, fake_scores):
    with pytest.warns(UserWarning, match="only 2 of the 4 heads score >= 0.5 as induction heads"):
        result = shuffle_exp(
            model, None, SEG, VOCAB, HEADS[:4], None, n_exp=1, batch_size=2, scores=fake_scores, progress=False
        )
    assert result.record["strength"]["n_strong"] == 2
    assert result.record["strength"]["scores"] == [0.9, 0.7, 0.0, 0.0]


def test_scores_are_computed_when_not_given(model):
    result = shuffle_exp(model, None, SEG, VOCAB, HEADS[:2], None, n_exp=1, batch_size=2, progress=False)
    expected = head_scores(model, seg_len=SEG, rep=3, seed=0).induction
    assert result.record["strength"]["scores"] == pytest.approx([expected[1, 0], expected[1, 2]])


def test_sweep_scores_the_original_once_and_matches_single_runs(model, fake_scores, tmp_path):
    sweep = shuffle_sweep(
        model,
        model.config,
        SEG,
        VOCAB,
        HEADS,
        [2, 5],
        tmp_path,
        component="OV",
        n_exp=2,
        batch_size=BATCH,
        scores=fake_scores,
        progress=False,
    )
    assert sweep.probs["shuffle"].shape == (2, 2, BATCH, 3 * SEG - 1 - SEG - 4)
    assert np.array_equal(sweep.probs["original"][0], sweep.probs["original"][1])
    single = shuffle_exp(
        model,
        model.config,
        SEG,
        VOCAB,
        HEADS,
        None,
        component="OV",
        n_exp=2,
        batch_size=BATCH,
        scores=fake_scores,
        progress=False,
    )
    for condition in single.probs:
        np.testing.assert_array_equal(sweep.probs[condition][1], single.probs[condition])
    assert sweep.record["n_strong"] == [0, 1]
    rows = summary_rows(sweep)
    assert len(rows) == 6 and rows[4]["condition"] == "random baseline" and rows[4]["K"] == 2
    assert rows[4]["err"] == pytest.approx(sweep.errs["random baseline"][0].mean())
    record = json.loads((tmp_path / "shuffle_sweep_OV_T6.json").read_text())
    assert record["Ks"] == [2, 5] and len(record["summary"]["shuffle"]["err"]["mean"]) == 2
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".npz", ".png"}


def test_save_dir_none_writes_nothing_and_a_dir_gets_data_and_figure(model, fake_scores, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shuffle_exp(model, None, SEG, VOCAB, HEADS[:2], None, n_exp=1, batch_size=2, scores=fake_scores, progress=False)
    assert list(tmp_path.iterdir()) == []
    shuffle_exp(model, None, SEG, VOCAB, HEADS[:2], "out", n_exp=1, batch_size=2, scores=fake_scores, progress=False)
    arrays = np.load(tmp_path / "out" / "shuffle_QK_K2_T6.npz")
    assert arrays["errs_random_baseline"].shape == (1, 2, 3 * SEG - 1 - SEG - 4)


def test_projection_rank_zero_is_unedited_and_full_rank_control_equals_common(model, fake_scores):
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]  # 4 heads x d_head 8 = d_model: full rank is reachable
    result = project_exp(
        model,
        model.config,
        head_weights(model),
        SEG,
        VOCAB,
        ih,
        HEADS,
        None,
        max_rank=32,
        step=16,
        n_exp=2,
        batch_size=BATCH,
        scores=fake_scores,
        progress=False,
    )
    assert result.record["ranks"] == [0, 16, 32]
    positions = copy_positions(SEG, 3, burn_in=4)
    ids = copying_batches(2, BATCH, SEG, VOCAB)[1]
    p, _ = direct_probs_errs(model, ids, positions)
    for condition in ("common subspace", "random subspace"):
        np.testing.assert_allclose(result.probs[condition][0, 1], p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.probs["common subspace"][2], result.probs["random subspace"][2], atol=1e-6)
    assert not np.allclose(result.probs["common subspace"][1], result.probs["random subspace"][1])


def test_keeping_the_whole_space_changes_nothing(model, fake_scores):
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    result = project_exp(
        model,
        None,
        head_weights(model),
        SEG,
        VOCAB,
        ih,
        HEADS,
        None,
        component="OV",
        project_out=False,
        max_rank=32,
        step=32,
        n_exp=1,
        batch_size=BATCH,
        scores=fake_scores,
        progress=False,
    )
    np.testing.assert_allclose(result.probs["common subspace"][1], result.probs["common subspace"][0], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(vocab_size=98), r"vocab_size=98 is out of range: choose 2..97"),
        (dict(seg_len=30), "exceeds the model's context of 64"),
        (dict(configuration=random_gpt2(n_layer=2).config), "configuration does not match the model: n_layer=2"),
        (dict(heads=[[1, 0]]), "at least 2 heads"),
        (dict(component="QKV"), "component must be one of"),
    ],
)
def test_bad_settings_raise_before_any_work(model, fake_scores, kwargs, message):
    args = dict(configuration=None, seg_len=SEG, vocab_size=VOCAB, heads=HEADS, save_dir=None)
    args.update(kwargs)
    with pytest.raises(IHLibError, match=message):
        shuffle_exp(model, scores=fake_scores, n_exp=1, batch_size=2, progress=False, **args)


def test_projection_rank_beyond_the_stack_raises(model, fake_scores):
    with pytest.raises(IHLibError, match="max_rank <= 16"):
        project_exp(
            model,
            None,
            head_weights(model),
            SEG,
            VOCAB,
            [[1, 0], [1, 2]],
            HEADS,
            None,
            max_rank=20,
            scores=fake_scores,
            progress=False,
        )


def test_breaking_every_induction_head_raises_the_copying_error_sharply(default_model):
    scores = head_scores(default_model)
    ihs = [[l, h] for l, h in scores.IH_list if scores.induction[l, h] >= 0.5]
    result = shuffle_exp(
        default_model,
        default_model.config,
        20,
        default_model.config.vocab_size,
        ihs,
        None,
        n_exp=3,
        batch_size=32,
        scores=scores,
        progress=False,
    )
    summary = result.record["summary"]
    assert summary["original"]["err"]["high"] < 0.15
    assert summary["random baseline"]["err"]["low"] > summary["original"]["err"]["high"] + 0.4
    zero = torch.zeros(default_model.config.n_embd, default_model.config.n_embd)
    ids = copying_batches(1, 32, 20, default_model.config.vocab_size)[0]
    with projection_edit(default_model, ihs, zero, "QK"):
        _, errs = pred_probs(default_model, ids, copy_positions(20, 3, burn_in=4))
    assert errs.mean() > summary["original"]["err"]["high"] + 0.4


# ---------------------------------------------------------------- head selection, readings and verdicts


@pytest.fixture(scope="module")
def ranked_scores():
    """Three induction heads (0.9, 0.8, 0.6) in layer 1, two shifting heads (0.8, 0.7) in layer 0; L0H3 is both weak
    induction (0.2) and strong shifting, so it ranks 4th among induction heads."""
    induction, shifting = np.full((3, 4), 0.05), np.full((3, 4), 0.05)
    induction[1, 0], induction[1, 2], induction[1, 1], induction[0, 3] = 0.9, 0.8, 0.6, 0.2
    shifting[0, 3], shifting[0, 1] = 0.8, 0.7
    return HeadScores(induction, shifting)


def test_heads_count_when_they_reach_the_fraction_of_the_best_score(ranked_scores):
    assert kind_threshold(ranked_scores, "induction", 0.5) == pytest.approx(0.45)
    assert kind_thresholds(ranked_scores, 0.5) == pytest.approx({"induction": 0.45, "shifting": 0.4})
    assert strong_heads(ranked_scores, "induction") == [[1, 0], [1, 2], [1, 1]]
    assert strong_heads(ranked_scores, "induction", fraction=0.7) == [[1, 0], [1, 2]]
    assert strong_heads(ranked_scores, "shifting") == [[0, 3], [0, 1]]
    assert top_heads(ranked_scores, "induction") == [[1, 0], [1, 2], [1, 1]]
    assert top_heads(ranked_scores, "induction", 4) == [[1, 0], [1, 2], [1, 1], [0, 3]]
    assert [head_role(ranked_scores, *h) for h in ([1, 0], [0, 3], [2, 2])] == [
        "induction head",
        "shifting head",
        "neither",
    ]
    with pytest.raises(IHLibError, match="fraction must be in"):
        kind_threshold(ranked_scores, "induction", 0.0)


def test_selection_table_divides_by_the_uniform_baseline_and_marks_roles(ranked_scores):
    table = selection_table(ranked_scores, "induction", 4, {"induction": 0.05, "shifting": 0.1})
    assert table["head"].tolist() == ["L1H0", "L1H2", "L1H1", "L0H3"]
    assert table["induction score / uniform"].tolist() == pytest.approx([18, 16, 12, 4])
    assert table.iloc[:, 4].tolist() == [True, True, True, False]
    assert table["role"].tolist()[-1] == "shifting head"


def test_intact_heads_counts_real_heads_left_with_a_real_component():
    real = [[1, 0], [1, 1], [1, 2]]
    assert intact_heads([], real) == 3
    assert intact_heads([[[1, 0], [1, 1]], [[1, 1], [1, 0]]], real) == 3  # swapped among real heads
    assert intact_heads([[[1, 0], [0, 3]], [[0, 3], [1, 0]]], real) == 2  # one real head got an outsider's
    assert intact_heads([[[1, 0], [2, 0]], [[1, 1], [2, 1]], [[1, 2], [2, 2]]], real) == 0


def test_a_threshold_mapping_gives_each_kind_its_own_bar(model, ranked_scores):
    result = shuffle_exp(
        model,
        None,
        SEG,
        VOCAB,
        [[0, 3], [0, 1], [2, 0]],
        None,
        component="OV",
        n_exp=1,
        batch_size=2,
        scores=ranked_scores,
        threshold={"induction": 0.45, "shifting": 0.4},
        progress=False,
    )
    assert result.record["strength"]["threshold"] == 0.4 and result.record["strength"]["n_strong"] == 2


def test_repetition_table_matches_the_arrays_and_the_pairs(model, ranked_scores):
    sweep = shuffle_sweep(
        model,
        None,
        SEG,
        VOCAB,
        ranked_scores.IH_list,
        [2, 4],
        None,
        n_exp=2,
        batch_size=2,
        scores=ranked_scores,
        progress=False,
    )
    real = strong_heads(ranked_scores, "induction")
    table = repetition_table(sweep, real)
    assert len(table) == 3 * 2 * 2
    row = table.query("condition == 'random baseline' and K == 4 and repetition == 1").iloc[0]
    assert row["err"] == pytest.approx(sweep.errs["random baseline"][1, 1].mean())
    assert row["intact real heads"] == intact_heads(sweep.record["pairs"]["random baseline"][1][1], real)
    assert set(table.query("condition == 'original'")["intact real heads"]) == {3}
    within = table.query("condition == 'shuffle' and K == 2")["intact real heads"]
    assert set(within) == {3}  # the top 2 are both real: shuffling them keeps every real component
    figure = plot_repetitions(table, len(real), "induction", "QK", "title")
    assert figure.axes[1].get_xlabel() == "Induction heads whose QK still comes from one of them"


def synthetic_result(means: dict, record: dict, reference: np.ndarray | None = None) -> InterventionResult:
    """A result with errors `means[condition][i] + (-0.01, 0, 0.01, 0)` over 4 repetitions, probabilities 1 - error.

    The error change is paired with `reference` per repetition (default: the "original" condition, per K).
    """
    offsets = np.array([-0.01, 0.0, 0.01, 0.0])
    errs = {c: np.array(m)[:, None, None, None] + offsets[None, :, None, None] for c, m in means.items()}
    errs = {c: np.broadcast_to(e, (*e.shape[:2], 2, 3)).copy() for c, e in errs.items()}
    probs = {c: 1 - e for c, e in errs.items()}
    reference = errs["original"].mean(axis=(-2, -1)) if reference is None else reference
    return InterventionResult(probs, errs, dict(record, n_exp=4, summary=condition_summary(probs, errs, reference)))


def synthetic_sweep(component: str, heads: list, shuffle: list, random: list, Ks: list) -> InterventionResult:
    """A `shuffle_sweep`-like result: cyclic shuffles within the top K, random sources from layer 2."""
    pairs = {
        "shuffle": [[[[heads[i], heads[(i + 1) % K]] for i in range(K)]] * 4 for K in Ks],
        "random baseline": [[[[heads[i], [2, i % 4]] for i in range(K)]] * 4 for K in Ks],
    }
    record = dict(experiment="shuffle_sweep", component=component, Ks=Ks, heads=heads, pairs=pairs)
    means = {"original": [0.02] * len(Ks), "shuffle": shuffle, "random baseline": random}
    return synthetic_result(means, record)


@pytest.mark.parametrize(
    "shuffle, random, label",
    [
        ([0.02, 0.02, 0.6], [0.3, 0.9, 0.9], "supported"),
        ([0.02, 0.4, 0.6], [0.3, 0.9, 0.9], "partly supported"),
        ([0.02, 0.85, 0.9], [0.3, 0.9, 0.9], "not supported"),
        ([0.02, 0.02, 0.02], [0.02, 0.04, 0.05], "not tested"),
    ],
)
def test_shuffle_verdict_reads_the_sweep_at_the_number_of_real_heads(ranked_scores, shuffle, random, label):
    sweep = synthetic_sweep("QK", ranked_scores.IH_list, shuffle, random, [2, 3, 4])
    verdict = shuffle_verdicts({"QK": sweep}, ranked_scores)["QK"]
    assert verdict.verdict == label
    assert "among the 3 heads that count as induction heads" in verdict.text
    assert "sit in layer(s) 1: all in one layer" in verdict.details[0]


def test_shuffle_verdict_details_and_table_name_redundancy_the_heads_beyond_and_the_spread(ranked_scores, tmp_path):
    sweep = synthetic_sweep("QK", ranked_scores.IH_list, [0.02, 0.02, 0.6], [0.05, 0.9, 0.9], [2, 3, 4])
    verdicts = shuffle_verdicts({"QK": sweep}, ranked_scores, save_dir=tmp_path)
    details = verdicts["QK"].details
    assert "breaks copying only from K = 3 on" in details[1]
    assert "continues with L0H3 (shifting head)" in details[2] and "first breaks copying at K = 4" in details[2]
    assert "1 of the shuffled heads count as shifting heads and lose their own QK" in details[2]
    assert "for 'shuffle' at K = 4, from 0.59 to 0.61" in details[3]
    assert json.loads((tmp_path / "verdict.json").read_text())[0]["verdict"] == "supported"
    table = shuffle_table(sweep, ranked_scores)
    assert table["shuffle: reading"].tolist() == ["intact", "intact", "breaks"]
    assert table["random baseline: reading"].tolist() == ["intact", "breaks", "breaks"]
    assert table["induction heads among the K"].tolist() == [2, 3, 3]
    assert table["shuffle: intact induction heads"].tolist() == [3, 3, 2]  # K=4 hands L1H1's QK to L0H3
    assert table.loc[4, "error: shuffle"] == "0.60 [0.59, 0.61]"


def test_shuffle_verdict_without_two_real_heads_says_there_is_nothing_to_shuffle():
    lonely = HeadScores(np.array([[0.9, 0.1], [0.1, 0.1]]), np.array([[0.1, 0.9], [0.2, 0.1]]))
    sweep = synthetic_sweep("QK", lonely.IH_list, [0.02], [0.9], [2])
    verdict = shuffle_verdicts({"QK": sweep}, lonely)["QK"]
    assert verdict.verdict == "not tested" and "nothing to shuffle" in verdict.text


def synthetic_projection(component: str, project_out: bool, common: list, random: list) -> InterventionResult:
    """A `project_exp`-like result over ranks 0, 4, 8 (rank 0 = unedited)."""
    record = dict(
        experiment="project",
        component=component,
        project_out=project_out,
        ranks=[0, 4, 8],
        heads=[[1, 0], [1, 1]],
        IH_proj=[[1, 0], [1, 1], [1, 2]],
        stack_energy_at_rank=[0.0, 0.6, 0.9],
        batch_size=2,
    )
    means = {"common subspace": common, "random subspace": random}
    return synthetic_result(means, record, reference=common[0] + np.array([-0.01, 0.0, 0.01, 0.0]))


def test_projection_verdicts_need_a_decisive_rank_for_each_edit(tmp_path):
    runs = [
        synthetic_projection("QK", True, [0.02, 0.5, 0.9], [0.02, 0.02, 0.3]),
        synthetic_projection("QK", False, [0.02, 0.5, 0.02], [0.02, 0.9, 0.9]),
        synthetic_projection("OV", True, [0.02, 0.5, 0.9], [0.02, 0.02, 0.3]),
        synthetic_projection("OV", False, [0.02, 0.5, 0.3], [0.02, 0.9, 0.05]),
    ]
    assert [decisive_rank(r) for r in runs] == [4, 8, 4, None]
    verdicts = projection_verdicts(runs, save_dir=tmp_path)
    assert verdicts["QK"].verdict == "supported" and verdicts["OV"].verdict == "partly supported"
    assert "first keeps copying intact at rank 8" in verdicts["QK"].text and "hold 90%" in verdicts["QK"].text
    assert "never keeps copying intact" in verdicts["OV"].text and "up to rank 8" in verdicts["OV"].text
    assert len(json.loads((tmp_path / "verdict.json").read_text())) == 2
    table = projection_table(runs)
    assert table["first decisive rank"].tolist() == [4, 8, 4, "none up to 8"]
    assert table["rank shown"].tolist() == [4, 8, 4, 8]
    assert table.loc["OV: keep only in W_O", "error: random subspace"] == "0.05 [0.04, 0.06]"
    with pytest.raises(IHLibError, match="both a project-out and a keep-only run for QK"):
        projection_verdicts(runs[:1])


def test_stack_energy_figure_draws_the_cumulative_share_and_the_even_spread():
    figure = plot_stack_energy(np.array([3.0, 1.0, 1.0, 1.0]), [2], "spectrum")
    blue, even = figure.axes[0].lines[:2]
    np.testing.assert_allclose(blue.get_ydata(), [0.75, 10 / 12, 11 / 12, 1.0])
    np.testing.assert_allclose(even.get_ydata(), [0.25, 0.5, 0.75, 1.0])
    assert figure.axes[0].get_title() == "spectrum"


def test_intervals_print_rates_clipped_to_zero_one_and_changes_with_signs():
    from ihlib.experiments import _interval

    assert _interval({"mean": 0.85, "low": 0.61, "high": 1.08}) == "0.85 [0.61, 1.00]"
    assert _interval({"mean": -0.001, "low": -0.004, "high": 0.03}, signed=True) == "+0.00 [+0.00, +0.03]"
    assert _interval({"mean": 0.5, "low": np.nan, "high": np.nan}) == "0.50 (one repetition: no interval)"


def test_one_repetition_gives_no_reading(model, ranked_scores):
    sweep = shuffle_sweep(
        model,
        None,
        SEG,
        VOCAB,
        ranked_scores.IH_list,
        [2, 3],
        None,
        n_exp=1,
        batch_size=2,
        scores=ranked_scores,
        progress=False,
    )
    verdict = shuffle_verdicts({"QK": sweep}, ranked_scores)["QK"]
    assert verdict.verdict == "not tested" and "one repetition gives no confidence interval" in verdict.details[0]
    assert set(shuffle_table(sweep, ranked_scores)["shuffle: reading"]) == {"unclear"}
