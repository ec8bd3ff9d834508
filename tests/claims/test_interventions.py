"""Claims 3 and 4 by intervention: shuffling and projection experiments against slow obvious computations,
the rule for which heads count, readings, verdicts and tables."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib.claims.projection import (
    SUBSPACES,
    ProjectionResult,
    coinciding_ranks,
    common_subspace,
    decisive_rank,
    head_energy,
    judge_projection,
    killed_rank,
    plateau,
    project,
)
from ihlib.claims.projection_controls import (
    FITTINGS,
    available_fittings,
    edit_plan,
    eigenbasis,
    energy_matrix,
    energy_share,
    fitting_unavailable,
    least_leakage,
    matched_subspace,
    overlap,
)
from ihlib.claims.shuffle_conditions import ALIKE
from ihlib.claims.shuffling import (
    ShuffleControls,
    ShuffleSweep,
    intact_heads,
    judge_shuffle_controls,
    repetition_words,
    shuffle,
    shuffle_controls,
    shuffle_sweep,
)
from ihlib.claims.verdicts import save_verdicts
from ihlib.core.copying import CopyingSettings, check_configuration, pred_probs
from ihlib.core.edits import cross_layer_pairs, cross_layer_possible, exchange_pairs, projection_edit
from ihlib.core.factored import stacked_qk_svd, subspace_projector
from ihlib.core.stats import Interval, mean_ci, t_quantile
from ihlib.heads.scoring import HeadScores, head_scores
from ihlib.heads.selection import count_threshold, counting_heads, head_role, top_heads
from ihlib.model.batches import copy_positions
from ihlib.model.errors import IHLibError
from ihlib.model.loading import transformer_of
from ihlib.model.weights import head_weights, qk
from ihlib.report.formatting import format_interval
from ihlib.report.plots_experiments import plot_repetitions, plot_stack_energy
from ihlib.report.projection_sentences import fitting_words, projection_verdict
from ihlib.report.saving import save_result
from ihlib.report.sentences import shuffle_verdict
from ihlib.report.tables import fitting_table, projection_table, repetition_table, selection_table, shuffle_table

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


def settings(**changes) -> CopyingSettings:
    """The small copying setting of these tests, with `changes`."""
    return replace(CopyingSettings(seg_len=SEG, vocab_size=VOCAB, batch_size=BATCH, n_exp=2), **changes)


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


def test_unedited_condition_equals_a_direct_computation(model):
    result = shuffle(model, HEADS, settings=settings(seed=3), progress=False)
    positions = copy_positions(SEG, 3, burn_in=4)
    for r, ids in enumerate(settings(seed=3).batches()):
        p, e = direct_probs_errs(model, ids, positions)
        np.testing.assert_allclose(result.probs["original"][r], p, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(result.errs["original"][r], e)


@pytest.mark.parametrize("component", ["QK", "OV"])
def test_edited_conditions_equal_a_slowly_edited_deep_copy(model, component):
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = shuffle(model, HEADS, component=component, settings=settings(seed=4), progress=False)
    positions = copy_positions(SEG, 3, burn_in=4)
    for c, kind in enumerate(["shuffle", "random baseline"]):
        for r, ids in enumerate(settings(seed=4).batches()):
            pairs = exchange_pairs(model, HEADS, kind, np.random.default_rng([4, r, len(HEADS), c]))
            assert pairs == result.pairs[kind][r]
            p, e = direct_probs_errs(slow_edited_copy(model, pairs, component), ids, positions)
            np.testing.assert_allclose(result.probs[kind][r], p, rtol=1e-4, atol=1e-6)
            assert np.mean(result.errs[kind][r] != e) < 0.02  # argmax ties may flip in float32
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_gpt2model_body_gives_the_same_numbers_as_the_lm_model(model):
    lm = shuffle(model, HEADS, settings=settings(n_exp=1), progress=False)
    body = shuffle(transformer_of(model), HEADS, settings=settings(n_exp=1), progress=False)
    for condition in lm.probs:
        np.testing.assert_allclose(lm.probs[condition], body.probs[condition], rtol=1e-5, atol=1e-7)


def test_summary_is_the_mean_and_t_interval_of_per_repetition_means(model):
    result = shuffle(model, HEADS, settings=settings(n_exp=3), progress=False)
    per_rep = result.errs["random baseline"].mean(axis=(1, 2))
    stats = result.summary["random baseline"]["err"]
    assert stats["mean"] == pytest.approx(per_rep.mean())
    half = t_quantile(0.975, 2) * per_rep.std(ddof=1) / np.sqrt(3)
    assert stats["high"] == pytest.approx(per_rep.mean() + half)
    change = result.summary["shuffle"]["err_change"]["mean"]
    assert change == pytest.approx((result.errs["shuffle"] - result.errs["original"]).mean())


def test_sweep_scores_the_original_once_and_matches_single_runs(model, tmp_path):
    sweep = shuffle_sweep(model, HEADS, [2, 5], component="OV", settings=settings(), progress=False)
    assert sweep.probs["shuffle"].shape == (2, 2, BATCH, 3 * SEG - 1 - SEG - 4)
    assert np.array_equal(sweep.probs["original"][0], sweep.probs["original"][1])
    single = shuffle(model, HEADS, component="OV", settings=settings(), progress=False)
    for condition in single.probs:
        np.testing.assert_array_equal(sweep.probs[condition][1], single.probs[condition])
    save_result(sweep, tmp_path)
    record = json.loads((tmp_path / "shuffle_sweep_OV_T6.json").read_text())
    assert record["Ks"] == [2, 5] and len(record["summary"]["shuffle"]["err"]["mean"]) == 2
    assert record["vocab_size"] == VOCAB and record["seg_len"] == SEG
    arrays = np.load(tmp_path / "shuffle_sweep_OV_T6.npz")
    np.testing.assert_array_equal(arrays["errs_random_baseline"], sweep.errs["random baseline"])


def test_experiments_take_the_heads_they_are_given_and_score_none(model, monkeypatch):
    import ihlib.heads.scoring

    def refuse(*args, **kwargs):
        raise AssertionError("an experiment scored heads")

    monkeypatch.setattr(ihlib.heads.scoring, "attention_patterns", refuse)
    result = shuffle(model, HEADS[:2], settings=settings(n_exp=1), progress=False)
    assert result.heads == HEADS[:2]


def test_projection_rank_zero_is_unedited_and_full_rank_control_equals_common(model):
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]  # 4 heads x d_head 8 = d_model: full rank is reachable
    options = dict(max_rank=32, step=16, cross_fit=False, settings=settings(), progress=False)
    result = project(model, head_weights(model), ih, HEADS, **options)
    assert result.ranks == [0, 16, 32]
    positions = copy_positions(SEG, 3, burn_in=4)
    ids = settings().batches()[1]
    p, _ = direct_probs_errs(model, ids, positions)
    for condition in ("common subspace", "random subspace"):
        np.testing.assert_allclose(result.probs[condition][0, 1], p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.probs["common subspace"][2], result.probs["random subspace"][2], atol=1e-6)
    assert not np.allclose(result.probs["common subspace"][1], result.probs["random subspace"][1])


def test_keeping_the_whole_space_changes_nothing(model):
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    result = project(
        model,
        head_weights(model),
        ih,
        HEADS,
        component="OV",
        project_out=False,
        max_rank=32,
        step=32,
        cross_fit=False,
        settings=settings(n_exp=1),
        progress=False,
    )
    np.testing.assert_allclose(result.probs["common subspace"][1], result.probs["common subspace"][0], atol=1e-5)


def test_cross_fitted_heads_are_never_edited_with_a_subspace_they_helped_fit(model):
    W = head_weights(model)
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    plan = edit_plan(W, ih, [[1, 0], [2, 1], [0, 3]])
    assert [group[:2] for group in plan.groups] == [
        ([[1, 0], [2, 1]], [[1, 2], [2, 3]]),
        ([[0, 3]], ih),
    ]
    np.testing.assert_allclose(plan.groups[0][2].abs(), stacked_qk_svd(W, [[1, 2], [2, 3]])[1].abs(), atol=1e-12)
    lonely = project(model, W, [[1, 0]], [[1, 0]], settings=settings(n_exp=1), progress=False)
    assert "only 1 IH spans the subspace" in lonely.untested and lonely.probs == {}


def test_leave_one_layer_out_never_edits_a_head_with_a_subspace_fitted_on_its_own_layer(model):
    W = head_weights(model)
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    edited = [[1, 0], [1, 2], [2, 1], [2, 3], [0, 3]]
    plan = edit_plan(W, ih, edited, fitting="leave one layer out")
    for heads, fitted, V in plan.groups:
        assert {h[0] for h in heads}.isdisjoint({h[0] for h in fitted})
        np.testing.assert_allclose(V.abs(), stacked_qk_svd(W, fitted)[1].abs(), atol=1e-12)
    assert sorted(h for heads, _, _ in plan.groups for h in heads) == sorted(edited)
    assert least_leakage(ih, edited) == "leave one layer out"
    one_layer = [[1, 0], [1, 2], [1, 3]]
    assert "no other layer to fit on" in fitting_unavailable(one_layer, one_layer, "leave one layer out")
    assert least_leakage(one_layer, one_layer) == "alternate folds"
    assert available_fittings(one_layer, [[0, 3]]) == list(FITTINGS)  # the edited head's layer holds no IH
    with pytest.raises(IHLibError, match="leave one layer out cannot run here"):
        edit_plan(W, one_layer, one_layer, fitting="leave one layer out")


def test_energy_equals_the_dense_norm(model):
    W = head_weights(model)
    heads = [[1, 0], [2, 1]]
    P = subspace_projector(stacked_qk_svd(W, [[1, 2], [2, 3]])[1][:, :4], project_out=True)
    dense = [float(np.linalg.norm(qk(W.double(), *h).numpy() @ P.numpy(), "fro") ** 2) for h in heads]
    np.testing.assert_allclose(head_energy(W, heads, "QK", P).numpy(), dense, rtol=1e-10)
    C = energy_matrix(W, heads[0], "QK")
    V = stacked_qk_svd(W, [[1, 2], [2, 3]])[1][:, :4]
    removed = 1.0 - float(head_energy(W, heads[:1], "QK", P)[0] / head_energy(W, heads[:1], "QK")[0])
    assert energy_share(C, V) == pytest.approx(removed, rel=1e-10)


@pytest.mark.parametrize("component", ["QK", "OV"])
def test_the_matched_control_removes_the_common_subspace_energy_within_one_percent_at_every_rank(model, component):
    """Per head and rank, and summed over heads in `project`: the same share, with overlap well below 1."""
    W = head_weights(model)
    ih = [[1, 0], [1, 2], [2, 1], [2, 3]]
    heads = [[1, 0], [2, 1], [0, 3]]
    plan = edit_plan(W, ih, heads, fitting="leave one layer out")
    for head in heads:
        C = energy_matrix(W, head, component)
        for rank in range(1, 9):
            V = plan.subspace_of(head)[:, :rank]
            matched = matched_subspace(C, V, np.random.default_rng(rank))
            assert matched.share == pytest.approx(energy_share(C, V), rel=0.01)
            assert matched.target == pytest.approx(energy_share(C, V))
            assert matched.overlap == pytest.approx(overlap(V, matched.U)) and matched.overlap < 0.9
            torch.testing.assert_close(matched.U.T @ matched.U, torch.eye(rank, dtype=torch.float64))
    options = dict(component=component, max_rank=8, step=2, settings=settings(n_exp=2), progress=False)
    result = project(model, W, ih, heads, **options)
    assert result.fitting == "leave one layer out"
    for common, matched in zip(result.energy["common subspace"], result.energy["energy-matched"], strict=True):
        assert matched == pytest.approx(common, rel=0.01, abs=1e-12)
    assert all(o < 0.9 for o in result.overlap["energy-matched"][1:])


def test_a_precomputed_eigenbasis_gives_the_same_matched_subspace_as_one_computed_inside(model):
    """`matched_subspace(..., basis=eigenbasis(C))` (one eigh per head per sweep) equals the call without it."""
    W = head_weights(model)
    C = energy_matrix(W, [2, 1], "OV")
    basis = eigenbasis(C)
    assert basis.rank == int(torch.linalg.matrix_rank(C))
    for rank in (1, 3, 6):
        V = torch.linalg.qr(torch.randn(C.shape[0], rank, generator=torch.Generator().manual_seed(rank)).double())[0]
        inside = matched_subspace(C, V, np.random.default_rng(rank))
        reused = matched_subspace(C, V, np.random.default_rng(rank), basis=basis)
        torch.testing.assert_close(reused.U, inside.U)
        assert (reused.share, reused.informative) == (inside.share, inside.informative)


def test_a_subspace_holding_all_of_a_heads_energy_makes_the_rank_not_informative(model):
    W = head_weights(model)
    C = energy_matrix(W, [1, 0], "QK")
    whole = torch.linalg.eigh(C)[1].flip(-1)[:, :8]  # d_head = 8: the head's whole range
    matched = matched_subspace(C, whole, np.random.default_rng(0))
    assert matched.target == pytest.approx(1.0) and not matched.informative


def test_a_head_whose_energy_lies_in_the_subspace_gets_a_matched_control_that_coincides_with_it():
    """Energy 10 on four directions, 1 on four more, 1e-3 on the rest: a rank-4 subspace holding the top four (91% of
    the energy) has no matched twin; one holding two of them and two weaker ones (50%) has."""
    d, rank = 24, 4
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0)).double())[0]
    energies = torch.tensor([10.0] * rank + [1.0] * rank + [1e-3] * (d - 2 * rank), dtype=torch.float64)
    C = basis @ torch.diag(energies) @ basis.T
    concentrated = matched_subspace(C, basis[:, :rank], np.random.default_rng(0))
    assert concentrated.informative and concentrated.coincides and concentrated.overlap > 0.99
    spread = matched_subspace(C, basis[:, 2 : 2 + rank], np.random.default_rng(0))
    assert spread.informative and not spread.coincides and spread.overlap < 0.9


def test_a_rank_whose_matched_control_coincides_is_judged_against_the_random_subspace_alone():
    """Keep only: common intact, random breaks, matched as good as common; it decides only where it coincides."""
    common, random = [0.02, 0.02, 0.02, 0.02], [0.02, 0.9, 0.9, 0.9]
    alike = synthetic_projection("QK", False, common, random, own=common)
    assert decisive_rank(alike) is None
    coinciding = replace(alike, coinciding=[[], [[1, 0]], [[1, 0]], []])
    assert decisive_rank(coinciding) == 4 and coinciding_ranks(coinciding) == [4, 8]
    out = synthetic_projection("QK", True, [0.02, 0.5, 0.95, 0.95], [0.02, 0.02, 0.02, 0.3])
    judgement = judge_projection([out, coinciding])["QK"]
    assert judgement.label == "supported"
    assert judgement.why.startswith("At ranks 4, 8 (keep only) the energy-matched control is the common subspace")


def test_projection_without_heads_is_not_tested_and_says_why(model):
    W = head_weights(model)
    runs = [
        project(model, W, [], HEADS, project_out=out, settings=settings(n_exp=1), progress=False)
        for out in (True, False)
    ]
    assert runs[0].untested.startswith("no head counts as an induction head") and runs[0].probs == {}
    judgement = judge_projection(runs)["QK"]
    assert judgement.label == "not tested"
    verdict = projection_verdict({True: runs[0], False: runs[1]}, judgement, tolerance=0.1)
    assert verdict.verdict == "not tested" and "no common subspace to project" in verdict.text
    assert "not tested" in projection_table(runs).columns


@pytest.mark.parametrize(
    "changes, heads, message",
    [
        (dict(vocab_size=98), HEADS, r"vocab_size=98 is out of range: choose 2..97"),
        (dict(seg_len=30), HEADS, "exceeds the model's context of 64"),
        (dict(), [[1, 0]], "at least 2 heads"),
        (dict(), [[1, 0], [1, 0]], "twice"),
        (dict(), [[1.7, 0.2], [1, 1]], "integers"),
    ],
)
def test_bad_settings_raise_before_any_work(model, changes, heads, message):
    with pytest.raises(IHLibError, match=message):
        shuffle(model, heads, settings=settings(n_exp=1, **changes), progress=False)


def test_bad_component_and_configuration_raise(model):
    with pytest.raises(IHLibError, match="component must be one of"):
        shuffle(model, HEADS, component="QKV", settings=settings(n_exp=1), progress=False)
    with pytest.raises(IHLibError, match="configuration does not match the model: n_layer=2"):
        check_configuration(model, random_gpt2(n_layer=2).config)
    with pytest.raises(IHLibError, match="Ks is empty"):
        shuffle_sweep(model, HEADS, [], settings=settings(n_exp=1), progress=False)


def test_projection_rank_beyond_the_stack_raises(model):
    with pytest.raises(IHLibError, match="max_rank <= 16"):
        project(model, head_weights(model), [[1, 0], [1, 2]], HEADS, max_rank=20, cross_fit=False, progress=False)


def test_breaking_every_induction_head_raises_the_copying_error_sharply(copy_model):
    scores = head_scores(copy_model)
    ihs = counting_heads(scores, "induction")
    setting = CopyingSettings(seg_len=20, batch_size=32, n_exp=3)
    summary = shuffle(copy_model, ihs, settings=setting, progress=False).summary
    assert summary["original"]["err"]["high"] < 0.15
    assert summary["random baseline"]["err"]["low"] > summary["original"]["err"]["high"] + 0.4
    zero = torch.zeros(copy_model.config.n_embd, copy_model.config.n_embd)
    ids = setting.resolved(copy_model).batches()[0]
    with projection_edit(copy_model, ihs, zero, "QK"):
        _, errs = pred_probs(copy_model, ids, copy_positions(20, 3, burn_in=4))
    assert errs.mean() > summary["original"]["err"]["high"] + 0.4


# ---------------------------------------------------------------- which heads count, readings and verdicts


@pytest.fixture(scope="module")
def ranked_scores():
    """Three induction heads (0.9, 0.8, 0.6) in layer 1, two shifting heads (0.8, 0.7) in layer 0; L0H3 is both weak
    induction (0.2) and strong shifting, so it ranks 4th among induction heads."""
    induction, shifting = np.full((3, 4), 0.05), np.full((3, 4), 0.05)
    induction[1, 0], induction[1, 2], induction[1, 1], induction[0, 3] = 0.9, 0.8, 0.6, 0.2
    shifting[0, 3], shifting[0, 1] = 0.8, 0.7
    return HeadScores(induction, shifting)


def test_heads_count_when_they_reach_the_fraction_of_the_best_score(ranked_scores):
    assert count_threshold(ranked_scores, "induction", fraction=0.5) == pytest.approx(0.45)
    assert counting_heads(ranked_scores, "induction") == [[1, 0], [1, 2], [1, 1]]
    assert counting_heads(ranked_scores, "induction", fraction=0.7) == [[1, 0], [1, 2]]
    assert counting_heads(ranked_scores, "shifting") == [[0, 3], [0, 1]]
    assert top_heads(ranked_scores, "induction") == [[1, 0], [1, 2], [1, 1]]
    assert top_heads(ranked_scores, "induction", 4) == [[1, 0], [1, 2], [1, 1], [0, 3]]
    assert [head_role(ranked_scores, *h) for h in ([1, 0], [0, 3], [2, 2])] == [
        "induction head",
        "shifting head",
        "neither",
    ]
    with pytest.raises(IHLibError, match="fraction must be in"):
        count_threshold(ranked_scores, "induction", fraction=0.0)


def test_heads_near_the_uniform_baseline_never_count_however_they_rank():
    uniform = HeadScores(np.zeros((2, 2)), np.zeros((2, 2))).uniform
    induction = np.full((2, 2), uniform["induction"]) + np.array([[0.05, 0.04], [0.0, 0.01]])
    shifting = np.full((2, 2), uniform["shifting"]) + np.array([[0.0, 0.3], [0.02, 0.0]])
    scores = HeadScores(induction, shifting)
    assert count_threshold(scores, "induction") == pytest.approx(uniform["induction"] + 0.1)
    assert counting_heads(scores, "induction") == []  # the best is only 0.05 above uniform
    assert counting_heads(scores, "shifting") == [[0, 1]]
    assert counting_heads(scores, "induction", margin=0.045) == [[0, 0]]


def test_random_gpt2_small_shapes_have_no_heads_that_count(gpt2_small_shaped):
    scores = head_scores(gpt2_small_shaped, batch_size=4, seg_len=8)
    assert counting_heads(scores, "induction") == [] and counting_heads(scores, "shifting") == []


def test_selection_table_divides_by_the_uniform_baseline_and_marks_roles(ranked_scores):
    table = selection_table(ranked_scores, "induction", 4)
    assert table["head"].tolist() == ["L1H0", "L1H2", "L1H1", "L0H3"]
    expected = np.array([0.9, 0.8, 0.6, 0.2]) / ranked_scores.uniform["induction"]
    assert table["induction score / uniform"].tolist() == pytest.approx(expected, abs=1e-3)
    assert table.iloc[:, 4].tolist() == [True, True, True, False]
    assert table["role"].tolist()[-1] == "shifting head"


def test_intact_heads_counts_real_heads_left_with_a_real_component():
    real = [[1, 0], [1, 1], [1, 2]]
    assert intact_heads([], real) == 3
    assert intact_heads([[[1, 0], [1, 1]], [[1, 1], [1, 0]]], real) == 3  # swapped among real heads
    assert intact_heads([[[1, 0], [0, 3]], [[0, 3], [1, 0]]], real) == 2  # one real head got an outsider's
    assert intact_heads([[[1, 0], [2, 0]], [[1, 1], [2, 1]], [[1, 2], [2, 2]]], real) == 0


def test_repetition_table_matches_the_arrays_and_the_pairs(model, ranked_scores):
    sweep = shuffle_sweep(model, ranked_scores.IH_list, [2, 4], settings=settings(batch_size=2), progress=False)
    real = counting_heads(ranked_scores, "induction")
    table = repetition_table(sweep, real)
    assert len(table) == 3 * 2 * 2
    row = table.query("condition == 'random baseline' and K == 4 and repetition == 1").iloc[0]
    assert row["err"] == pytest.approx(sweep.errs["random baseline"][1, 1].mean())
    assert row["intact real heads"] == intact_heads(sweep.pairs["random baseline"][1][1], real)
    assert set(table.query("condition == 'original'")["intact real heads"]) == {3}
    within = table.query("condition == 'shuffle' and K == 2")["intact real heads"]
    assert set(within) == {3}  # the top 2 are both real: shuffling them keeps every real component
    figure = plot_repetitions(sweep, real, title="title")["repetitions_QK"]
    assert figure.axes[1].get_xlabel() == "Induction heads whose QK still comes from one of them"


def synthetic_arrays(means: dict) -> tuple[dict, dict]:
    """Errors `means[c][i] + (-0.01, 0, 0.01, 0)` over 4 repetitions of 2 x 3 values; probabilities 1 - error."""
    offsets = np.array([-0.01, 0.0, 0.01, 0.0])
    errs = {c: np.array(m)[:, None, None, None] + offsets[None, :, None, None] for c, m in means.items()}
    errs = {c: np.broadcast_to(e, (*e.shape[:2], 2, 3)).copy() for c, e in errs.items()}
    return {c: 1 - e for c, e in errs.items()}, errs


def synthetic_sweep(component: str, heads: list, shuffle: list, random: list, Ks: list) -> ShuffleSweep:
    """A sweep with cyclic shuffles within the top K and random sources from layer 2, over 4 repetitions."""
    pairs = {
        "shuffle": [[[[heads[i], heads[(i + 1) % K]] for i in range(K)]] * 4 for K in Ks],
        "random baseline": [[[[heads[i], [2, i % 4]] for i in range(K)]] * 4 for K in Ks],
    }
    probs, errs = synthetic_arrays({"original": [0.02] * len(Ks), "shuffle": shuffle, "random baseline": random})
    return ShuffleSweep(component, heads, Ks, CopyingSettings(n_exp=4, batch_size=2), probs, errs, pairs)


def synthetic_controls(
    component: str, heads: list, others: list, means: dict, absent: dict, distance: float = 0.5
) -> ShuffleControls:
    """Shuffle controls over 4 repetitions with errors `means[condition] + (-0.01, 0, 0.01, 0)`; every pair of
    edited heads of one layer at attention distance `distance`."""
    probs, errs = synthetic_arrays({c: [m] for c, m in means.items()})
    probs, errs = {c: v[0] for c, v in probs.items()}, {c: v[0] for c, v in errs.items()}
    pairs = {c: [[]] * 4 for c in means if c != "original"}
    distances = {f"{a}-{b}": distance for i, a in enumerate(heads) for b in heads[i + 1 :] if a[0] == b[0]}
    setting = CopyingSettings(n_exp=4, batch_size=2)
    return ShuffleControls(component, heads, others, setting, probs, errs, pairs, absent, distances)


ONE_LAYER, TWO_LAYERS = [[1, 0], [1, 1], [1, 2]], [[1, 0], [2, 1], [1, 2], [2, 3]]
NO_CROSS = {"cross-layer shuffle": "the edited heads all sit in layer(s) 1"}


@pytest.mark.parametrize("component", ["QK", "OV"])
@pytest.mark.parametrize(
    "heads, means, absent, distance, label, reason",
    [
        (ONE_LAYER, {"shuffle": 0.02, "random heads": 0.9}, NO_CROSS, 0.02, "not informative", "attend alike"),
        (ONE_LAYER, {"shuffle": 0.02, "random heads": 0.9}, NO_CROSS, 0.5, "supported", "harmless"),
        (ONE_LAYER, {"shuffle": 0.02, "random heads": 0.12}, NO_CROSS, 0.5, "not informative", "unclear"),
        (ONE_LAYER, {"shuffle": 0.12, "random heads": 0.9}, NO_CROSS, 0.5, "partly supported", "unclear"),
        (
            TWO_LAYERS,
            {"shuffle": 0.02, "cross-layer shuffle": 0.02, "random heads of these layers": 0.9},
            {},
            0.02,
            "supported",
            "harmless",
        ),
        (
            TWO_LAYERS,
            {"shuffle": 0.02, "cross-layer shuffle": 0.4, "random heads of these layers": 0.9},
            {},
            0.5,
            "partly supported",
            "hurt more",
        ),
        (
            TWO_LAYERS,
            {"shuffle": 0.02, "cross-layer shuffle": 0.85, "random heads of these layers": 0.9},
            {},
            0.5,
            "not supported",
            "not clearly more",
        ),
        (
            TWO_LAYERS,
            {"shuffle": 0.02, "cross-layer shuffle": 0.02, "random heads of these layers": 0.05},
            {},
            0.5,
            "not informative",
            "harmless: its interval lies below",
        ),
    ],
)
def test_shuffle_is_judged_only_from_a_test_that_could_fail(heads, means, absent, distance, label, reason, component):
    """One rule for QK and OV: a same-layer shuffle of heads that attend alike cannot fail; across layers the
    cross-layer shuffle counts on its own result; "unclear" is never read as harmless."""
    controls = synthetic_controls(component, heads, [[1, 3], [2, 0]], {"original": 0.02} | means, absent, distance)
    judgement = judge_shuffle_controls(controls)
    assert judgement.label == label and reason in judgement.why


def test_identical_same_layer_heads_give_not_informative(model):
    """Heads of one layer with identical weights: every shuffle there is a no-op, so the test could not fail."""
    twin = copy.deepcopy(model)
    attn = transformer_of(twin).h[1].attn
    d_head = twin.config.n_embd // twin.config.n_head
    with torch.no_grad():
        for part in range(3):
            block = attn.c_attn.weight[:, part * twin.config.n_embd : (part + 1) * twin.config.n_embd]
            block.copy_(block[:, :d_head].repeat(1, twin.config.n_head))
            bias = attn.c_attn.bias[part * twin.config.n_embd : (part + 1) * twin.config.n_embd]
            bias.copy_(bias[:d_head].repeat(twin.config.n_head))
        attn.c_proj.weight.copy_(attn.c_proj.weight[:d_head].repeat(twin.config.n_head, 1))
    settings = CopyingSettings(seg_len=8, rep=3, batch_size=4, n_exp=3, vocab_size=50)
    controls = shuffle_controls(twin, [[1, 0], [1, 1]], component="QK", exclude=[], settings=settings, progress=False)
    assert controls.absent == {"cross-layer shuffle": "the edited heads all sit in layer(s) 1"}
    for condition in ("shuffle", "other heads of these layers, shuffled"):
        np.testing.assert_array_equal(controls.errs[condition], controls.errs["original"])
    assert controls.distances == {"L1H0-L1H1": pytest.approx(0.0, abs=1e-6)}
    judgement = judge_shuffle_controls(controls)
    assert judgement.label == "not informative" and "share layer 1 and attend alike" in judgement.why
    assert controls.distinct["shuffle"] == 1  # one derangement of 2 heads: 3 repetitions, one experiment
    assert "repeat one experiment" in repetition_words(controls, "shuffle")


def test_near_identical_heads_attend_alike_and_make_the_shuffle_not_informative_for_that_reason(model):
    """Two heads of one layer whose weights differ by 1e-3 noise: their attention differs by far less than ALIKE,
    so the shuffle among them is "not informative" because they attend alike, whatever the other controls read."""
    twin = copy.deepcopy(model)
    attn = transformer_of(twin).h[1].attn
    d_model, d_head = twin.config.n_embd, twin.config.n_embd // twin.config.n_head
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for part in range(3):
            block = attn.c_attn.weight[:, part * d_model : (part + 1) * d_model]
            block[:, d_head : 2 * d_head] = block[:, :d_head] + 1e-3 * torch.randn(d_model, d_head, generator=noise)
            bias = attn.c_attn.bias[part * d_model : (part + 1) * d_model]
            bias[d_head : 2 * d_head] = bias[:d_head]
        attn.c_proj.weight[d_head : 2 * d_head] = attn.c_proj.weight[:d_head]
    settings = CopyingSettings(seg_len=8, rep=3, batch_size=4, n_exp=3, vocab_size=50)
    controls = shuffle_controls(twin, [[1, 0], [1, 1]], component="OV", exclude=[], settings=settings, progress=False)
    distance = controls.distances["L1H0-L1H1"]
    assert 0 < distance < ALIKE / 10
    judgement = judge_shuffle_controls(controls)
    assert judgement.label == "not informative" and "attend alike" in judgement.why
    assert f"{distance:.3f}" in judgement.why
    apart = shuffle_controls(model, [[1, 0], [1, 1]], component="OV", exclude=[], settings=settings, progress=False)
    assert apart.distances["L1H0-L1H1"] > distance


def test_cross_layer_shuffles_never_keep_a_head_in_its_layer():
    heads = [[0, 0], [0, 1], [1, 0], [2, 2]] + [[3, h] for h in range(4)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        pairs = cross_layer_pairs(heads, rng)
        assert all(target[0] != source[0] for target, source in pairs)
        assert sorted(t for t, _ in pairs) == sorted(heads) == sorted(s for _, s in pairs)
    assert cross_layer_possible(heads) and not cross_layer_possible([[0, 0], [0, 1], [1, 0]])


def test_shuffle_verdict_names_controls_redundancy_the_heads_beyond_and_the_spread(ranked_scores, tmp_path):
    sweep = synthetic_sweep("QK", ranked_scores.IH_list, [0.02, 0.02, 0.6], [0.05, 0.9, 0.9], [2, 3, 4])
    means = {"original": 0.02, "shuffle": 0.02, "other heads of these layers, shuffled": 0.03, "random heads": 0.9}
    controls = synthetic_controls("QK", ranked_scores.IH_list[:3], [[1, 3]], means, NO_CROSS, distance=0.05)
    judgement = judge_shuffle_controls(controls)
    verdict = shuffle_verdict(controls, judgement, sweep, ranked_scores, fraction=0.5, margin=0.1, tolerance=0.1)
    text = " ".join(verdict.details)
    assert verdict.verdict == "not informative" and verdict.caveat.startswith("could not fail here")
    assert verdict.summary[0].isupper() and verdict.summary[1:] == judgement.why[1:]  # the reading, one sentence
    assert "No 'cross-layer shuffle' control on this model" in text
    assert "breaks copying only from K = 3 on" in text
    assert "continues with L0H3 (shifting head)" in text and "first breaks copying at K = 4" in text
    assert "for 'shuffle' at K = 4, from 0.59 to 0.61" in text
    save_verdicts([verdict], tmp_path)
    assert json.loads((tmp_path / "verdict.json").read_text())[0]["verdict"] == "not informative"
    table = shuffle_table(sweep, ranked_scores)
    assert table["shuffle: reading"].tolist() == ["intact", "intact", "breaks"]
    assert table["shuffle: intact induction heads"].tolist() == [3, 3, 2]  # K=4 hands L1H1's QK to L0H3


RANKS = [0, 4, 8, 12]


def synthetic_projection(
    component: str, project_out: bool, common: list, random: list, own: list | None = None
) -> ProjectionResult:
    """A projection result over ranks 0, 4, 8, 12 (rank 0 = unedited), 4 repetitions."""
    own = own if own is not None else [0.02 if project_out else 0.9] * len(RANKS)
    probs, errs = synthetic_arrays({"common subspace": common, "random subspace": random, "energy-matched": own})
    setting = CopyingSettings(n_exp=4, batch_size=2)
    heads, ih = [[1, 0], [1, 1]], [[1, 0], [1, 1], [1, 2]]
    energy = {s: [0.0, 0.3, 0.5, 0.7] for s in SUBSPACES}
    overlaps = {s: [0.0, 0.2, 0.3, 0.4] for s in SUBSPACES}
    return ProjectionResult(
        component,
        project_out,
        ih,
        heads,
        RANKS,
        setting,
        probs,
        errs,
        energy,
        [],
        True,
        None,
        "alternate folds",
        overlaps,
        [[] for _ in RANKS],
    )


def test_projection_decides_at_two_consecutive_ranks_against_random_and_energy_matched_controls():
    runs = [
        synthetic_projection("QK", True, [0.02, 0.5, 0.95, 0.95], [0.02, 0.02, 0.02, 0.3]),
        synthetic_projection("QK", False, [0.02, 0.5, 0.02, 0.02], [0.02, 0.9, 0.9, 0.9]),
        synthetic_projection("OV", True, [0.02, 0.5, 0.6, 0.6], [0.02, 0.02, 0.02, 0.02]),
        synthetic_projection("OV", False, [0.02, 0.02, 0.5, 0.02], [0.02, 0.9, 0.9, 0.9]),
        synthetic_projection(
            "QK", True, [0.02, 0.5, 0.95, 0.95], [0.02, 0.02, 0.02, 0.02], own=[0.02, 0.6, 0.95, 0.95]
        ),
    ]
    assert [decisive_rank(r) for r in runs] == [
        4,
        8,
        4,
        None,
        None,
    ]  # OV keep decides at 4 and 12, never twice in a row
    assert [killed_rank(r) for r in runs[::2]] == [8, None, 8]
    assert plateau(runs[2]) == pytest.approx(0.6)
    judgements = judge_projection(runs[:4])
    assert judgements["QK"].label == "supported" and judgements["OV"].label == "partly supported"
    capped = judge_projection(
        [runs[2], synthetic_projection("OV", False, [0.02, 0.02, 0.02, 0.02], [0.02, 0.9, 0.9, 0.9])]
    )
    assert capped["OV"].label == "partly supported" and "never kills copying" in capped["OV"].why
    verdict = projection_verdict({True: runs[2], False: runs[3]}, judgements["OV"], tolerance=0.1)
    assert "never kills copying" in verdict.text and verdict.caveat.startswith("copying is never killed (plateau 0.60)")
    decisive = [judgements["OV"].decisive[out] or "none" for out in (True, False)]
    assert verdict.summary.startswith("Projecting out never kills copying") and verdict.summary.endswith(
        f"rank is {decisive[0]} for projecting out and {decisive[1]} for keeping only."
    )
    plan = [{"edited": [[1, 0]], "fitted_on": [[1, 1], [1, 2]]}, {"edited": [[1, 1]], "fitted_on": [[1, 0]]}]
    leaky = replace(runs[0], plan=plan)
    words = fitting_words(leaky)
    assert words.startswith("cross-fitted in 2 alternate folds (L1H0 edited with the subspace of L1H1, L1H2;")
    leak = "leaks through same-layer siblings: L1H0, L1H1 got a subspace fitted on IHs of their own layer"
    assert words.endswith(leak + ", which read the same residual")
    side_by_side = fitting_table(runs[:4])
    assert len(side_by_side) == 4 * 3 and side_by_side["overlap"].max() == pytest.approx(0.4)
    table = projection_table(runs[:4])
    assert table["first decisive rank"].tolist() == [4, 8, 4, "none up to 12"]
    assert table.loc["OV: keep only in W_O", "energy kept: energy-matched"] == pytest.approx(0.7)
    assert verdict.key.comparison == "common subspace minus energy-matched control"
    assert verdict.key.value.mean == pytest.approx(0.5 - 0.02)  # OV out at its decisive rank 4
    with pytest.raises(IHLibError, match="both a project-out and a keep-only run for QK"):
        judge_projection(runs[:1])


def test_stack_energy_figure_draws_the_cumulative_share_and_the_even_spread():
    figure = plot_stack_energy(np.array([3.0, 1.0, 1.0, 1.0]), [2], title="spectrum")["stack_energy"]
    blue, even = figure.axes[0].lines[:2]
    np.testing.assert_allclose(blue.get_ydata(), [0.75, 10 / 12, 11 / 12, 1.0])
    np.testing.assert_allclose(even.get_ydata(), [0.25, 0.5, 0.75, 1.0])
    assert figure.axes[0].get_title() == "spectrum"


def test_intervals_print_rates_clipped_to_zero_one_and_changes_with_signs():
    assert format_interval(Interval(0.85, 0.61, 1.08)) == "0.85 [0.61, 1.00]"
    assert format_interval(Interval(-0.001, -0.004, 0.03), signed=True) == "+0.00 [+0.00, +0.03]"
    assert format_interval(Interval(0.5, np.nan, np.nan)) == "0.50 (one repetition: no interval)"


def test_one_repetition_gives_no_reading(model, ranked_scores):
    sweep = shuffle_sweep(
        model, ranked_scores.IH_list, [2, 3], settings=settings(n_exp=1, batch_size=2), progress=False
    )
    controls = shuffle_controls(
        model, ranked_scores.IH_list[:2], settings=settings(n_exp=1, batch_size=2), progress=False
    )
    judgement = judge_shuffle_controls(controls)
    assert judgement.label == "not tested" and "one repetition gives no confidence interval" in judgement.why
    assert set(shuffle_table(sweep, ranked_scores)["shuffle: reading"]) == {"unclear"}
