"""Controls that can fail (claims 1 and 2): control groups, head resampling, and weights where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.claims.diagonal import diagonal_controls, judge_diagonal
from ihlib.claims.subspaces import JUDGED, judge_subspace_controls, subspace_controls
from ihlib.core.circuits import embedding_basis, orient_signs, pair_statistics
from ihlib.core.control_groups import composable, cross_groups, draw_pairs, sampled_group, self_groups
from ihlib.core.factored import head_subspaces
from ihlib.core.stats import head_bootstrap_effect, head_resampled_means, masked_mean
from ihlib.model.weights import K, O, Q, V, ov, qk
from ihlib.report.formatting import MAX_COLUMNS, reading_frame
from ihlib.report.sentences import diagonal_verdict, matching_verdict
from ihlib.report.tables import effects_table

SHAPE = (3, 4)  # layers x heads
D_MODEL, D_HEAD = 32, 4
IH = [[2, 0], [2, 1]]
SH = [[1, 0], [1, 1]]


def random_weights(seed: int) -> torch.Tensor:
    """Random float64 `W_all (3, 4, 4, 32, 4)`."""
    return torch.randn(*SHAPE, 4, D_MODEL, D_HEAD, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def planted_weights(seed: int) -> torch.Tensor:
    """Random weights in which the IHs read keys from, and the shifting heads write into, one shared subspace U.

    IH: `W_q = W_k = U` (so `W_qk = U U^T`); shifting head: `W_o = W_v = U` (`W_ov = U U^T`): `W_qkov = U U^T`,
    a copying matrix on U. No other head touches U more than chance.
    """
    W = random_weights(seed)
    U = torch.linalg.qr(torch.randn(D_MODEL, D_HEAD, generator=torch.Generator().manual_seed(99), dtype=torch.float64))[
        0
    ]
    for layer, head in IH:
        W[layer, head, Q] = W[layer, head, K] = 3 * U
    for layer, head in SH:
        W[layer, head, O] = W[layer, head, V] = 3 * U
    return W


def test_composable_pairs_have_the_writing_head_in_an_earlier_layer():
    mask = composable([[2, 0], [1, 0], [0, 1]], [[0, 0], [1, 3], [2, 2]])
    np.testing.assert_array_equal(mask, [[True, True, False], [True, False, False], [False, False, False]])


def test_control_groups_use_no_listed_or_excluded_head_and_say_plainly_when_absent():
    groups = cross_groups(SHAPE, IH, SH, exclude=[[0, 3]])
    used = {tuple(h) for name, g in groups.items() if name != "listed" for h in g.rows + g.cols} - {
        tuple(h) for h in groups["specificity"].rows
    }
    assert used.isdisjoint({(0, 3), *map(tuple, IH), *map(tuple, SH)})
    for name in ("random composable", "same layers", "specificity"):
        group = groups[name]
        rows, cols = np.nonzero(group.mask)
        assert all(group.cols[j][0] < group.rows[i][0] for i, j in zip(rows, cols, strict=True))
    assert groups["random composable"].n_pairs == 2 * 3 + 2 * 5  # L1 {2,3} x L0 {0,1,2}; L2 {2,3} x L0, L1 others
    assert groups["same layers"].n_pairs == 2 * 2 and groups["specificity"].n_pairs == 2 * 2
    full = cross_groups(SHAPE, [[2, h] for h in range(4)], SH, exclude=[])
    assert not full["same layers"].exists
    assert full["same layers"].note == "does not exist: every head of the IHs' layer(s) 2 is listed or excluded"
    alone = self_groups(SHAPE, [[2, h] for h in range(4)], exclude=[], kind="induction")
    assert not alone["same layers"].exists and alone["random"].n_pairs == 8 * 7 // 2


def test_drawn_pairs_are_distinct_members_of_the_group():
    group = cross_groups(SHAPE, IH, SH, exclude=[])["random composable"]
    pairs, pool = draw_pairs(group, 5, np.random.default_rng(0))
    members = {(tuple(a), tuple(b)) for a, b in group.pairs()}
    assert len({(tuple(a), tuple(b)) for a, b in pairs.tolist()}) == 5 and pool.startswith("5 of the 20")
    assert all((tuple(a), tuple(b)) in members for a, b in pairs.tolist())
    everything, pool = draw_pairs(group, 100, np.random.default_rng(0))
    assert len(everything) == 20 and pool.startswith("all 20")


def test_head_resampling_equals_a_slow_loop_and_moves_pairs_that_share_a_head_together():
    values = np.arange(12.0).reshape(3, 4)
    mask = np.ones((3, 4), dtype=bool)
    mask[0, 0] = False
    fast = head_resampled_means(values, mask, False, 5, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(3, size=(5, 3)), rng.integers(4, size=(5, 4))
    slow = [np.mean([values[i, j] for i in rows[b] for j in cols[b] if mask[i, j]]) for b in range(5)]
    np.testing.assert_allclose(fast, slow)
    assert masked_mean(values, mask) == pytest.approx(values[mask].mean())


def test_identical_groups_give_no_effect_and_a_shifted_group_a_clear_one():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 6))
    mask = ~np.eye(6, dtype=bool)
    same = head_bootstrap_effect("same", (values, mask, False), (values, mask, False), n_boot=500)
    assert same.difference == 0 and same.low < 0 < same.high and not same.clear
    shifted = head_bootstrap_effect("shifted", (values + 3, mask, False), (values, mask, False), n_boot=500)
    assert shifted.difference == pytest.approx(3) and shifted.low > 0 and shifted.clear
    assert shifted.p_value == pytest.approx(1 / 501)


def test_embedding_basis_signs_are_fixed_whatever_the_solver_returns():
    W_E = torch.randn(50, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.3
    _, vectors = embedding_basis(W_E)
    flipped = vectors * torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1], dtype=torch.float64)
    torch.testing.assert_close(orient_signs(flipped, W_E.mean(0)), vectors)
    assert bool(((W_E.mean(0) @ vectors) >= 0).all())


def test_k_composition_and_token_wins_equal_their_dense_definitions():
    W = random_weights(2)
    W_E = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    qk_heads, ov_heads = [[2, 0], [1, 3]], [[1, 0], [0, 2]]
    stats = pair_statistics(W, qk_heads, ov_heads, W_E=W_E)
    for n, (q, o) in enumerate(zip(qk_heads, ov_heads, strict=True)):
        Wqk, Wov = qk(W, *q).numpy(), ov(W, *o).numpy()
        product = Wqk @ Wov
        dense = np.linalg.norm(product) / (np.linalg.norm(Wqk) * np.linalg.norm(Wov))
        assert stats["k_composition"][n] == pytest.approx(dense, rel=1e-10)
        tokens = W_E.numpy() @ product @ W_E.numpy().T
        assert stats["token_wins"][n] == pytest.approx(np.mean(tokens.argmax(1) == np.arange(40)))
    sampled = pair_statistics(W, qk_heads, ov_heads, W_E=W_E, max_tokens=10)
    np.testing.assert_allclose(sampled["k_composition"], stats["k_composition"])


def test_a_planted_copying_subspace_is_supported_by_claim_1_and_random_weights_are_not():
    planted = judge_diagonal(diagonal_controls(planted_weights(0), IH, SH, n_boot=500))
    assert planted.label == "supported" and set(planted.effects) == {"random composable", "same layers", "specificity"}
    assert all(e.clear for e in planted.effects.values())
    labels = [judge_diagonal(diagonal_controls(random_weights(s), IH, SH, n_boot=500)).label for s in range(4)]
    assert "supported" not in labels
    verdict = diagonal_verdict(planted)
    assert verdict.verdict == "supported" and len(verdict.details) == 3
    assert verdict.summary == (
        f"The {planted.n_pairs} listed pairs that can compose clear 3 of the 3 controls on the diagonal z-score "
        "(random composable, same layers, specificity)."
    )
    W_E = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    controls = diagonal_controls(planted_weights(0), IH, SH, W_E=W_E, n_boot=500)
    with_secondary = diagonal_verdict(judge_diagonal(controls), secondary=controls, model="planted")
    secondary = [line for line in with_secondary.details if line.startswith("Secondary")]
    assert len(secondary) == 2 and "K-composition" in secondary[0] and "token-basis rate" in secondary[1]
    primary = controls.effects["z"]["random composable"]
    assert with_secondary.key.value.mean == pytest.approx(primary.difference)
    assert with_secondary.key.comparison == "listed pairs minus random composable pairs"
    assert with_secondary.model == "planted" and with_secondary.scope.startswith("direct weight path")


def test_a_planted_shared_subspace_is_supported_by_claim_2_and_none_is_not():
    def judged(W: torch.Tensor):
        subspaces = head_subspaces(W)
        results = [
            subspace_controls(subspaces, IH_list=IH, Shifting_list=SH, ranks=[2, 4], n_boot=500),
            subspace_controls(subspaces, IH_list=IH, ranks=[2, 4], n_boot=500),
        ]
        return results, judge_subspace_controls(results)

    results, planted = judged(planted_weights(1))
    assert planted.label == "supported" and planted.labels == {"IH x SH": "supported", "IH x IH": "supported"}
    assert results[0].effects[JUDGED]["specificity"].listed_mean == pytest.approx(1.0)
    assert "same layers" in planted.absent["IH x IH"] or results[1].groups["same layers"].exists
    labels = [judged(random_weights(s))[1].label for s in range(4)]
    assert "supported" not in labels
    verdict = matching_verdict(planted)
    assert verdict.verdict == "supported" and any(line.startswith("IH x IH: supported") for line in verdict.details)
    assert verdict.summary.endswith("reads: IH x SH supported; IH x IH supported.")
    random_results, random_judgement = judged(random_weights(0))
    per_rank = matching_verdict(random_judgement, per_rank=random_results).details
    ranked = [line for line in per_rank if "per rank" in line]
    assert [line.split(" per rank")[0] for line in ranked] == ["IH x SH", "IH x IH"]
    assert all("r = 2:" in line and "r = 4:" in line for line in ranked)
    smallest = results[0].effects["mean@2"]
    assert all(e.clear for e in smallest.values())  # planted: every control cleared at r = 2, so no warning line
    assert not any("clears no control" in line for line in matching_verdict(planted, per_rank=results).details)


def test_a_sampled_group_keeps_max_pairs_of_its_own_pairs_seeded_and_both_orders_when_symmetric():
    """`sampled_group` keeps exactly `max_pairs` distinct pairs of the group, the same for the same seed."""
    shape = (12, 12)
    cross = cross_groups(shape, [[5, 0]], [[2, 0]], [])["random composable"]
    kept = sampled_group(cross, 300, np.random.default_rng(0))
    assert kept.n_pairs == 300 and not (kept.mask & ~cross.mask).any()
    assert (sampled_group(cross, 300, np.random.default_rng(0)).mask == kept.mask).all()
    assert f"300 of the {cross.n_pairs} pairs" in kept.note
    assert sampled_group(cross, cross.n_pairs, np.random.default_rng(0)) is cross
    assert sampled_group(cross, None, np.random.default_rng(0)) is cross
    symmetric = self_groups(shape, [[5, 0], [6, 1]], [], "IH")["random"]
    halved = sampled_group(symmetric, 40, np.random.default_rng(1))
    assert halved.n_pairs == 40 and (halved.mask == halved.mask.T).all()


def test_claim_1_draws_at_most_max_random_pairs_random_composable_pairs():
    """diagonal_controls computes the statistics of `max_random_pairs` random composable pairs, not of all."""
    every = diagonal_controls(random_weights(0), IH, SH, max_random_pairs=None, n_boot=50)
    few = diagonal_controls(random_weights(0), IH, SH, max_random_pairs=5, n_boot=50)
    assert every.groups["random composable"].n_pairs > 5 == few.groups["random composable"].n_pairs
    values = few.values["z"]["random composable"]
    assert np.isfinite(values).sum() == 5
    kept = few.groups["random composable"].mask
    np.testing.assert_allclose(values[kept], every.values["z"]["random composable"][kept], rtol=1e-10)


def test_effects_table_fits_the_text_column_and_keeps_pairs_means_interval_and_d_of_every_control():
    controls = diagonal_controls(planted_weights(0), IH, SH, n_boot=200)
    frame = effects_table(controls.effects, controls.groups)
    shown = reading_frame(frame)
    assert shown.shape == (sum(len(by) for by in controls.effects.values()), MAX_COLUMNS - 1)
    e = controls.effects["z"]["random composable"]
    control = f"random composable: {e.n_control} pairs, mean {e.control_mean:.3f}"
    row = frame.loc[("diagonal z-score (residual basis)", control)]
    assert row["difference [95% interval]"] == f"{e.difference:+.3f} [{e.low:+.3f}, {e.high:+.3f}]"
    assert row["listed mean"] == f"{e.listed_mean:.3f}"
    assert row["Cohen's d (p)"].startswith(f"{e.standardized:.2g} (")
