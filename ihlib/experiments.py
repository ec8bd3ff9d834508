"""Claims 3 and 4 by intervention: shuffle heads' QK/OV components (invariance) and project a subspace (pathway).

Every experiment repeats `n_exp` times. Repetition `r` draws its own batch of repeated random tokens
(seeded by `seed` and `r`) and scores every condition on that same batch (paired comparison), with
fresh permutations, random heads or random subspaces. Uncertainty: mean across repetitions of the
per-repetition mean (over samples and positions) with a 95% Student t-interval (`mean_ci`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ihlib.data import copy_positions, repeated_tokens
from ihlib.edits import check_component, exchange_edit, projection_edit, random_candidates, validated_heads
from ihlib.errors import IHLibError
from ihlib.metrics import pred_probs
from ihlib.models import AnyGPT2
from ihlib.plots import head_label, save_arrays, save_figure, save_json
from ihlib.plots_experiments import plot_by_position, plot_over_k, plot_rank_sweep
from ihlib.scoring import HeadScores, check_k, head_scores
from ihlib.verdicts import Verdict
from ihlib.weights import K as KEY
from ihlib.weights import Q, check_w_all

CONDITIONS = ("original", "shuffle", "random baseline")
SUBSPACES = ("common subspace", "random subspace")
SCORE_KIND = {"QK": "induction", "OV": "shifting"}


@dataclass
class InterventionResult:
    """Results of an intervention experiment; unpacks as `(probs, errs)`, the seed's return shape.

    `probs[condition]`, `errs[condition]`: arrays whose last three axes are `(n_exp, batch, n_positions)`
    (leading axes: K or rank where the experiment sweeps one). `record`: settings and summary as saved to
    JSON. `figures`: the figures by name, for notebooks to display.
    """

    probs: dict[str, np.ndarray]
    errs: dict[str, np.ndarray]
    record: dict
    figures: dict[str, plt.Figure] = field(default_factory=dict)

    def __iter__(self):
        """Yield `probs` then `errs`, so that `probs, errs = experiment(...)` works as in the seed."""
        return iter((self.probs, self.errs))


@functools.lru_cache(maxsize=64)
def t_quantile(q: float, df: int) -> float:
    """Return the `q` quantile of Student's t with `df` degrees of freedom (numerical; error below 1e-4)."""
    # With t = sqrt(df) tan(theta), theta has density proportional to cos(theta)^(df - 1) on (-pi/2, pi/2).
    theta = np.linspace(-np.pi / 2, np.pi / 2, 200_001)
    density = np.cos(theta) ** (df - 1)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return float(np.sqrt(df) * np.tan(np.interp(q, cdf / cdf[-1], theta)))


def mean_ci(values: np.ndarray, axis: int = -1, level: float = 0.95) -> dict[str, np.ndarray]:
    """Return `mean`, `low`, `high` of `values` along `axis`: the mean and its Student t-interval (NaN for n = 1)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return {"mean": mean, "low": nan, "high": nan}
    half = t_quantile(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def check_configuration(model: AnyGPT2, configuration: object | None) -> None:
    """Raise unless `configuration` (the seed passes `model.config`) describes `model`; None is accepted."""
    if configuration is None:
        return
    keys = ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")
    wrong = [
        f"{key}={getattr(configuration, key, None)} (model: {getattr(model.config, key)})"
        for key in keys
        if getattr(configuration, key, None) != getattr(model.config, key)
    ]
    if wrong:
        raise IHLibError(f"configuration does not match the model: {', '.join(wrong)}; pass model.config.")


def copying_setup(
    model: AnyGPT2,
    seg_len: int,
    vocab_size: int,
    rep: int,
    burn_in: int,
    bos_token_id: int | None,
) -> np.ndarray:
    """Validate a repeated-token setting against `model`; return the scored query positions."""
    if not 2 <= int(vocab_size) <= model.config.vocab_size:
        raise IHLibError(f"vocab_size={vocab_size} is out of range: choose 2..{model.config.vocab_size} (the model's).")
    length = int(bos_token_id is not None) + rep * seg_len
    if length > model.config.n_positions:
        raise IHLibError(
            f"rep * seg_len (+ BOS) = {length} tokens exceeds the model's context of {model.config.n_positions}."
        )
    return copy_positions(seg_len, rep, burn_in, bos=bos_token_id is not None)


def copying_batches(
    n_exp: int,
    batch_size: int,
    seg_len: int,
    vocab_size: int,
    rep: int = 3,
    seed: int = 0,
    bos_token_id: int | None = None,
) -> list[torch.Tensor]:
    """Return `n_exp` batches `(batch_size, [1 +] rep * seg_len)` of repeated tokens; batch r is seeded by (seed, r)."""
    if int(n_exp) < 1:
        raise IHLibError(f"n_exp must be at least 1, got {n_exp}.")
    seeds = [int(np.random.SeedSequence([seed, r]).generate_state(1)[0]) for r in range(n_exp)]
    return [repeated_tokens(batch_size, seg_len, vocab_size, rep, s, bos_token_id) for s in seeds]


def resolve_scores(
    model: AnyGPT2,
    scores: HeadScores | None,
    seg_len: int,
    rep: int,
    seed: int,
    bos_token_id: int | None,
) -> HeadScores | None:
    """Return `scores`, or score the model's heads on repeated tokens; None (with a warning) if it cannot."""
    if scores is not None:
        return scores
    try:
        return head_scores(model, seg_len=seg_len, rep=rep, seed=seed, bos_token_id=bos_token_id)
    except IHLibError as err:
        warnings.warn(f"Could not score heads ({err}); pass scores=head_scores(model).", stacklevel=3)
        return None


def threshold_for(threshold: float | dict[str, float], kind: str) -> float:
    """Return the score bar for `kind` heads: `threshold` itself, or its entry for `kind` when it is a mapping."""
    if isinstance(threshold, dict):
        if kind not in threshold:
            raise IHLibError(f"threshold has no entry for {kind!r} heads; give a number or a {{kind: bar}} mapping.")
        return float(threshold[kind])
    return float(threshold)


def head_strength(heads: list, scores: HeadScores | None, kind: str, threshold: float | dict[str, float]) -> dict:
    """Return `{kind, threshold, scores, n_strong}` for `heads`: how many score at least `threshold` as `kind` heads.

    `threshold` is one bar for every kind or a mapping `{kind: bar}` (see `kind_thresholds`).
    """
    threshold = threshold_for(threshold, kind)
    if scores is None:
        return {"kind": kind, "threshold": threshold, "scores": None, "n_strong": None}
    values = getattr(scores, kind)
    per_head = [float(values[layer, head]) for layer, head in heads]
    n_strong = int(sum(v >= threshold for v in per_head))
    return {"kind": kind, "threshold": threshold, "scores": per_head, "n_strong": n_strong}


def warn_weak_heads(strength: dict, what: str) -> None:
    """Warn when some of the heads in `strength` are not `kind` heads by their score; `what` names the call."""
    n_strong, n = strength["n_strong"], len(strength["scores"] or [])
    if n_strong is not None and n_strong < n:
        warnings.warn(
            f"{what}: only {n_strong} of the {n} heads score >= {strength['threshold']:.3g} as "
            f"{strength['kind']} heads; "
            f"the other {n - n_strong} are ordinary heads by this score, and the results mix them in.",
            stacklevel=3,
        )


def check_exchangeable(model: AnyGPT2, heads: list[list[int]], pool: list | None) -> None:
    """Raise before any forward pass if `heads` cannot be shuffled or given random heads from `pool`."""
    if len(heads) < 2:
        raise IHLibError(f"Shuffling needs at least 2 heads, got {len(heads)}.")
    random_candidates(model, heads, pool)


def _per_repetition(values: np.ndarray) -> np.ndarray:
    """Average `(..., n_exp, batch, n_positions)` over samples and positions: `(..., n_exp)`."""
    return values.mean(axis=(-2, -1))


def condition_summary(probs: dict, errs: dict, reference: np.ndarray) -> dict:
    """Return per condition the mean and 95% interval (across repetitions) of error, probability and error change.

    `reference`: per-repetition error of the unedited model `(..., n_exp)`; the change is paired per repetition.
    """
    summary = {}
    for condition in probs:
        err = _per_repetition(errs[condition])
        summary[condition] = {
            "err": mean_ci(err),
            "prob": mean_ci(_per_repetition(probs[condition])),
            "err_change": mean_ci(err - reference),
        }
    return summary


def by_position(probs: dict, errs: dict) -> dict:
    """Return per condition and metric the mean and 95% interval across repetitions at each position."""
    return {
        condition: {
            "err": mean_ci(errs[condition].mean(axis=-2), axis=0),
            "prob": mean_ci(probs[condition].mean(axis=-2), axis=0),
        }
        for condition in probs
    }


def summary_rows(result: InterventionResult) -> list[dict]:
    """Return the summary as flat rows (condition, K or rank, metric mean / low / high), e.g. for a DataFrame."""
    record = result.record
    sweep = ("K", record["Ks"]) if "Ks" in record else ("rank", record["ranks"]) if "ranks" in record else None
    rows = []
    for condition, stats in record["summary"].items():
        for i in range(len(sweep[1]) if sweep else 1):
            row = {"condition": condition} | ({sweep[0]: sweep[1][i]} if sweep else {})
            for metric, ci in stats.items():
                for key, name in (("mean", metric), ("low", f"{metric}_low"), ("high", f"{metric}_high")):
                    row[name] = float(np.asarray(ci[key])[i] if sweep else ci[key])
            rows.append(row)
    return rows


def _exchange_runs(
    model: AnyGPT2,
    batches: list[torch.Tensor],
    positions: np.ndarray,
    heads: list[list[int]],
    Ks: list[int],
    component: str,
    seed: int,
    pool: list | None,
    chunk_size: int,
    progress: bool,
) -> tuple[dict, dict, dict]:
    """Score every condition for each K on every batch: probs, errs `{condition: (n_K, n_exp, b, p)}` and the pairs."""
    n_exp = len(batches)
    scored = {condition: [[None] * n_exp for _ in Ks] for condition in CONDITIONS}
    pairs = {kind: [[None] * n_exp for _ in Ks] for kind in CONDITIONS[1:]}
    bar = tqdm(total=n_exp * (1 + 2 * len(Ks)), desc=f"shuffle {component}", disable=not progress)
    for r, ids in enumerate(batches):
        original = pred_probs(model, ids, positions, chunk_size)
        bar.update()
        for k, K in enumerate(Ks):
            scored["original"][k][r] = original
            for c, kind in enumerate(CONDITIONS[1:]):
                rng = np.random.default_rng([seed, r, K, c])
                with exchange_edit(model, heads[:K], component, kind, rng, pool) as used:
                    scored[kind][k][r] = pred_probs(model, ids, positions, chunk_size)
                pairs[kind][k][r] = used
                bar.update()
    bar.close()
    probs = {c: np.array([[p for p, _ in row] for row in rows]) for c, rows in scored.items()}
    errs = {c: np.array([[e for _, e in row] for row in rows]) for c, rows in scored.items()}
    return probs, errs, pairs


def _settings(**values: object) -> dict:
    """Return the experiment settings as a JSON-friendly dict."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def _copying_settings(
    n_exp: int, batch_size: int, seg_len: int, rep: int, burn_in: int, vocab_size: int, seed: int, positions: np.ndarray
) -> dict:
    """Return the copying-test settings every experiment record holds, under their argument names."""
    return {
        "n_exp": n_exp,
        "batch_size": batch_size,
        "seg_len": seg_len,
        "rep": rep,
        "burn_in": burn_in,
        "vocab_size": vocab_size,
        "seed": seed,
        "positions": positions,
    }


def shuffle_exp(
    model: AnyGPT2,
    configuration: object | None,
    seg_len: int,
    vocab_size: int,
    heads: list,
    save_dir: str | Path | None,
    component: str = "QK",
    n_exp: int = 10,
    batch_size: int = 50,
    rep: int = 3,
    seed: int = 0,
    burn_in: int = 4,
    bos_token_id: int | None = None,
    pool: list | None = None,
    scores: HeadScores | None = None,
    threshold: float | dict[str, float] = 0.5,
    chunk_size: int = 64,
    progress: bool = True,
) -> InterventionResult:
    """Shuffle the `component` ("QK" or "OV") of `heads` among themselves or replace it by random heads'; score copying.

    Returns probs/errs `{"original", "shuffle", "random baseline": (n_exp, batch, n_positions)}`; each
    repetition draws a fresh derangement and fresh random heads (from `pool`, default all other heads).
    The record says how many heads score >= `threshold` (a number or a `{kind: bar}` mapping; induction for
    QK, shifting for OV; `scores` computed when not given).
    Writes `shuffle_{component}_K{K}_T{seg_len}.{png,json,npz}` to `save_dir`.
    """
    check_component(component)
    check_configuration(model, configuration)
    heads = validated_heads(model, heads)
    K = check_k(len(heads), model.config.n_layer * model.config.n_head, "len(heads)")
    positions = copying_setup(model, seg_len, vocab_size, rep, burn_in, bos_token_id)
    strength = head_strength(
        heads, resolve_scores(model, scores, seg_len, rep, seed, bos_token_id), SCORE_KIND[component], threshold
    )
    warn_weak_heads(strength, f"shuffle_exp({component}, K={K})")
    check_exchangeable(model, heads, pool)
    batches = copying_batches(n_exp, batch_size, seg_len, vocab_size, rep, seed, bos_token_id)
    probs, errs, pairs = _exchange_runs(
        model, batches, positions, heads, [K], component, seed, pool, chunk_size, progress
    )
    probs, errs = {c: v[0] for c, v in probs.items()}, {c: v[0] for c, v in errs.items()}
    record = _settings(
        experiment="shuffle",
        component=component,
        K=K,
        heads=heads,
        strength=strength,
        **_copying_settings(n_exp, batch_size, seg_len, rep, burn_in, vocab_size, seed, positions),
        summary=condition_summary(probs, errs, _per_repetition(errs["original"])),
        by_position=by_position(probs, errs),
        pairs={kind: rows[0] for kind, rows in pairs.items()},
    )
    title = (
        f"Shuffling {component} of K={K} heads ({strength['n_strong']} with {strength['kind']} score "
        f">= {strength['threshold']:.3g})\nmean and 95% band over {n_exp} repetitions"
    )
    figure = plot_by_position(positions, record["by_position"], 1 / vocab_size, title)
    name = f"shuffle_{component}_K{K}_T{seg_len}"
    _save(save_dir, name, probs, errs, record, figure)
    return InterventionResult(probs, errs, record, {"by_position": figure})


def shuffle_sweep(
    model: AnyGPT2,
    configuration: object | None,
    seg_len: int,
    vocab_size: int,
    heads: list,
    Ks: list[int] | range,
    save_dir: str | Path | None,
    component: str = "QK",
    n_exp: int = 10,
    batch_size: int = 50,
    rep: int = 3,
    seed: int = 0,
    burn_in: int = 4,
    bos_token_id: int | None = None,
    pool: list | None = None,
    scores: HeadScores | None = None,
    threshold: float | dict[str, float] = 0.5,
    chunk_size: int = 64,
    progress: bool = True,
) -> InterventionResult:
    """Run `shuffle_exp` on `heads[:K]` for every K in `Ks` (same batches, the unedited model scored once).

    Returns probs/errs `{condition: (n_K, n_exp, batch, n_positions)}`; the record holds per K the mean and
    95% interval of each condition and how many of the K heads score >= `threshold`; the figure
    "over_k" is the summary over K. Writes `shuffle_sweep_{component}_T{seg_len}.{png,json,npz}`.
    """
    check_component(component)
    check_configuration(model, configuration)
    heads = validated_heads(model, heads)
    Ks = [check_k(K, len(heads), "K (a prefix length of heads)") for K in Ks]
    positions = copying_setup(model, seg_len, vocab_size, rep, burn_in, bos_token_id)
    scores = resolve_scores(model, scores, seg_len, rep, seed, bos_token_id)
    strengths = [head_strength(heads[:K], scores, SCORE_KIND[component], threshold) for K in Ks]
    weak = [K for K, s in zip(Ks, strengths, strict=True) if s["n_strong"] is not None and s["n_strong"] < K]
    if weak:
        warn_weak_heads(strengths[Ks.index(max(weak))], f"shuffle_sweep({component}, K={weak[0]}..{max(weak)})")
    for K in Ks:
        check_exchangeable(model, heads[:K], pool)
    batches = copying_batches(n_exp, batch_size, seg_len, vocab_size, rep, seed, bos_token_id)
    probs, errs, pairs = _exchange_runs(
        model, batches, positions, heads, Ks, component, seed, pool, chunk_size, progress
    )
    n_strong = [s["n_strong"] for s in strengths]
    record = _settings(
        experiment="shuffle_sweep",
        component=component,
        Ks=Ks,
        heads=heads,
        strength=strengths[Ks.index(max(Ks))],
        n_strong=n_strong,
        **_copying_settings(n_exp, batch_size, seg_len, rep, burn_in, vocab_size, seed, positions),
        summary=condition_summary(probs, errs, _per_repetition(errs["original"])),
        pairs=pairs,
    )
    title = (
        f"Shuffling {component} of the top K {SCORE_KIND[component]} heads\n"
        f"mean and 95% interval over {n_exp} repetitions"
    )
    figure = plot_over_k(Ks, record["summary"], n_strong, threshold_for(threshold, SCORE_KIND[component]), title)
    _save(save_dir, f"shuffle_sweep_{component}_T{seg_len}", probs, errs, record, figure)
    return InterventionResult(probs, errs, record, {"over_k": figure})


def stacked_qk_svd(W_all: torch.Tensor, heads: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Return singular values `(m,)` and right singular vectors `(d_model, m)` of the stack `[W_qk(h) for h in heads]`.

    Factored: `W_q = Q R` gives `W_qk = Q (R W_k^T)` with orthonormal `Q`, so the stack has the singular
    values and right vectors of the small stack of `R W_k^T`; `m = min(d_model, K * d_head)`. Float64.
    """
    check_w_all(W_all)
    W = W_all.detach().double()
    blocks = [torch.linalg.qr(W[layer, head, Q])[1] @ W[layer, head, KEY].T for layer, head in heads]
    _, S, Vh = torch.linalg.svd(torch.cat(blocks), full_matrices=False)
    return S, Vh.T


def common_subspace(W_all: torch.Tensor, heads: list, rank: int) -> torch.Tensor:
    """Return `V_r` `(d_model, rank)`: the orthonormal top-`rank` right singular vectors of the stacked `W_qk`."""
    if not heads:
        raise IHLibError("common_subspace needs at least one head.")
    _, V = stacked_qk_svd(W_all, heads)
    if not 1 <= int(rank) <= V.shape[1]:
        raise IHLibError(f"rank={rank} is out of range: choose 1..{V.shape[1]} (min(d_model, K * d_head)).")
    return V[:, : int(rank)]


def random_subspace(d_model: int, rank: int, rng: np.random.Generator) -> torch.Tensor:
    """Return a uniformly random orthonormal basis `(d_model, rank)` (QR of a Gaussian matrix), float64."""
    gaussian = torch.from_numpy(rng.standard_normal((d_model, rank)))
    return torch.linalg.qr(gaussian)[0]


def subspace_projector(V: torch.Tensor, project_out: bool) -> torch.Tensor:
    """Return `I - V V^T` (project the subspace out) or `V V^T` (keep only it), `(d_model, d_model)`."""
    P = V @ V.T
    return torch.eye(V.shape[0], dtype=V.dtype, device=V.device) - P if project_out else P


def rank_sweep(max_rank: int, step: int, n_available: int) -> list[int]:
    """Return the ranks `[0, step, 2 step, ..., <= max_rank]` (0 = unedited), validated against `n_available`."""
    if not 1 <= int(step) <= int(max_rank) <= n_available:
        raise IHLibError(
            f"Need 1 <= step <= max_rank <= {n_available} (min(d_model, len(IH_proj) * d_head)); "
            f"got step={step}, max_rank={max_rank}."
        )
    return [0, *range(int(step), int(max_rank) + 1, int(step))]


def _projection_runs(
    model: AnyGPT2,
    batches: list[torch.Tensor],
    positions: np.ndarray,
    V_common: torch.Tensor,
    heads: list[list[int]],
    ranks: list[int],
    component: str,
    project_out: bool,
    seed: int,
    chunk_size: int,
    progress: bool,
) -> tuple[dict, dict]:
    """Score the common and a random subspace at every rank on every batch: `{subspace: (n_ranks, n_exp, b, p)}`."""
    n_exp = len(batches)
    scored = {s: [[None] * n_exp for _ in ranks] for s in SUBSPACES}
    bar = tqdm(total=n_exp * (2 * len(ranks) - 1), desc=f"project {component}", disable=not progress)
    for r, ids in enumerate(batches):
        unedited = pred_probs(model, ids, positions, chunk_size)
        bar.update()
        for s in SUBSPACES:
            scored[s][0][r] = unedited
        for i, rank in enumerate(ranks[1:], start=1):
            bases = {
                "common subspace": V_common[:, :rank],
                "random subspace": random_subspace(V_common.shape[0], rank, np.random.default_rng([seed, r, rank])),
            }
            for s, V in bases.items():
                with projection_edit(model, heads, subspace_projector(V, project_out), component):
                    scored[s][i][r] = pred_probs(model, ids, positions, chunk_size)
                bar.update()
    bar.close()
    probs = {s: np.array([[p for p, _ in row] for row in rows]) for s, rows in scored.items()}
    errs = {s: np.array([[e for _, e in row] for row in rows]) for s, rows in scored.items()}
    return probs, errs


def project_exp(
    model: AnyGPT2,
    configuration: object | None,
    W_all: torch.Tensor,
    seg_len: int,
    vocab_size: int,
    IH_proj: list,
    heads: list,
    save_dir: str | Path | None,
    component: str = "QK",
    project_out: bool = True,
    max_rank: int = 100,
    step: int = 5,
    n_exp: int = 5,
    batch_size: int = 50,
    rep: int = 3,
    seed: int = 0,
    burn_in: int = 4,
    bos_token_id: int | None = None,
    scores: HeadScores | None = None,
    threshold: float | dict[str, float] = 0.5,
    chunk_size: int = 64,
    progress: bool = True,
) -> InterventionResult:
    """Project the common subspace of `IH_proj`'s `W_qk` out of (or keep only it in) `heads`' `W_k` (QK) or `W_o` (OV).

    Sweeps rank 0 (unedited), step, ..., max_rank; the control projects a fresh random subspace of the
    same rank in each repetition. Returns probs/errs `{"common subspace", "random subspace":
    (n_ranks, n_exp, batch, n_positions)}`. Writes `project_{component}_{out|keep}_K0{..}_K{..}_T{seg_len}.*`.
    """
    check_component(component)
    check_configuration(model, configuration)
    check_w_all(W_all)
    cfg = model.config
    expected = (cfg.n_layer, cfg.n_head, 4, cfg.n_embd, cfg.n_embd // cfg.n_head)
    if tuple(W_all.shape) != expected:
        raise IHLibError(f"W_all has shape {tuple(W_all.shape)}, the model needs {expected}: use head_weights(model).")
    IH_proj, heads = validated_heads(model, IH_proj, "IH_proj"), validated_heads(model, heads)
    if not IH_proj or not heads:
        raise IHLibError("IH_proj and heads must each list at least one [layer, head].")
    positions = copying_setup(model, seg_len, vocab_size, rep, burn_in, bos_token_id)
    S, V_full = stacked_qk_svd(W_all, IH_proj)
    ranks = rank_sweep(max_rank, step, V_full.shape[1])
    scores = resolve_scores(model, scores, seg_len, rep, seed, bos_token_id)
    strength = {
        "IH_proj": head_strength(IH_proj, scores, "induction", threshold),
        "heads": head_strength(heads, scores, SCORE_KIND[component], threshold),
    }
    warn_weak_heads(strength["IH_proj"], "project_exp(IH_proj)")
    warn_weak_heads(strength["heads"], f"project_exp({component} heads)")
    batches = copying_batches(n_exp, batch_size, seg_len, vocab_size, rep, seed, bos_token_id)
    V_common = V_full[:, : ranks[-1]]
    probs, errs = _projection_runs(
        model, batches, positions, V_common, heads, ranks, component, project_out, seed, chunk_size, progress
    )
    energy = (S**2).cumsum(0) / (S**2).sum()
    record = _settings(
        experiment="project",
        component=component,
        project_out=project_out,
        ranks=ranks,
        IH_proj=IH_proj,
        heads=heads,
        strength=strength,
        stack_energy_at_rank=[float(energy[r - 1]) if r else 0.0 for r in ranks],
        **_copying_settings(n_exp, batch_size, seg_len, rep, burn_in, vocab_size, seed, positions),
        summary=condition_summary(probs, errs, _per_repetition(errs["common subspace"][0])),
    )
    action = "Projecting out" if project_out else "Keeping only"
    where = "W_K" if component == "QK" else "W_O"
    title = (
        f"{action} the common subspace of {len(IH_proj)} IHs' W_QK in {where} of {len(heads)} heads, "
        f"vs a random subspace\nmean and 95% band over {n_exp} repetitions"
    )
    figure = plot_rank_sweep(ranks, record["summary"], title)
    name = f"project_{component}_{'out' if project_out else 'keep'}_K0{len(IH_proj)}_K{len(heads)}_T{seg_len}"
    _save(save_dir, name, probs, errs, record, figure)
    return InterventionResult(probs, errs, record, {"rank_sweep": figure})


def _save(save_dir: str | Path | None, name: str, probs: dict, errs: dict, record: dict, figure: plt.Figure) -> None:
    """Write `name.json` (record), `name.npz` (per-sample arrays) and `name.png` to `save_dir` when given."""
    if save_dir is None:
        return
    arrays = {f"probs_{c.replace(' ', '_')}": v for c, v in probs.items()}
    arrays.update({f"errs_{c.replace(' ', '_')}": v for c, v in errs.items()})
    save_arrays(save_dir, name, **arrays)
    save_json(save_dir, name, record)
    save_figure(figure, save_dir, name)


# ---------------------------------------------------------------- head selection, readings and verdicts


ONE_REPETITION = "one repetition gives no confidence interval, so nothing can be read: re-run with n_exp >= 2."


def kind_threshold(scores: HeadScores, kind: str, fraction: float = 0.5) -> float:
    """Return the bar for counting a head as a `kind` ("induction", "shifting") head: `fraction` x the best score."""
    if kind not in SCORE_KIND.values():
        raise IHLibError(f"kind must be one of {tuple(SCORE_KIND.values())}, got {kind!r}.")
    if not 0 < fraction <= 1:
        raise IHLibError(f"fraction must be in (0, 1], got {fraction}.")
    return float(fraction * getattr(scores, kind).max())


def kind_thresholds(scores: HeadScores, fraction: float = 0.5) -> dict[str, float]:
    """Return `{"induction": bar, "shifting": bar}` from `kind_threshold`, as the experiments' `threshold` argument."""
    return {kind: kind_threshold(scores, kind, fraction) for kind in SCORE_KIND.values()}


def strong_heads(scores: HeadScores, kind: str, fraction: float = 0.5) -> list[list[int]]:
    """Return the heads whose `kind` score is at least `kind_threshold(scores, kind, fraction)`, best first."""
    threshold = kind_threshold(scores, kind, fraction)
    values = getattr(scores, kind)
    ranking = scores.IH_list if kind == "induction" else scores.Shifting_list
    return [[layer, head] for layer, head in ranking if values[layer, head] >= threshold]


def top_heads(scores: HeadScores, kind: str, K: int | None = None, fraction: float = 0.5) -> list[list[int]]:
    """Return the top `K` heads of the `kind` ranking, or the `strong_heads(scores, kind, fraction)` when K is None."""
    if K is None:
        return strong_heads(scores, kind, fraction)
    ranking = scores.IH_list if kind == "induction" else scores.Shifting_list
    return ranking[: check_k(K, len(ranking))]


def head_role(scores: HeadScores, layer: int, head: int, fraction: float = 0.5) -> str:
    """Return "induction head", "shifting head", "both" or "neither" by `kind_threshold` of each kind."""
    kinds = SCORE_KIND.values()
    is_kind = tuple(bool(getattr(scores, k)[layer, head] >= kind_threshold(scores, k, fraction)) for k in kinds)
    roles = {(True, False): "induction head", (False, True): "shifting head", (True, True): "both"}
    return roles.get(is_kind, "neither")


def selection_table(
    scores: HeadScores, kind: str, K: int, uniform: dict[str, float], fraction: float = 0.5
) -> pd.DataFrame:
    """The top `K` heads of the `kind` ranking: both scores, the own-kind score over `uniform`, and each head's role.

    `uniform` is the uniform-attention baseline (`plots_heads.uniform_head_scores`, keys "induction", "shifting");
    the role says which kinds' bars (`fraction` x the best head of that kind) the head clears.
    """
    threshold = kind_threshold(scores, kind, fraction)
    ranking = scores.IH_list if kind == "induction" else scores.Shifting_list
    K = check_k(K, len(ranking))
    rows = [
        {
            "rank": rank,
            "head": head_label(layer, head),
            "induction score": float(scores.induction[layer, head]),
            "shifting score": float(scores.shifting[layer, head]),
            f"{kind} score / uniform": float(getattr(scores, kind)[layer, head]) / uniform[kind],
            f"counts as {kind} head (>= {threshold:.3g})": bool(getattr(scores, kind)[layer, head] >= threshold),
            "role": head_role(scores, layer, head, fraction),
        }
        for rank, (layer, head) in enumerate(ranking[:K], start=1)
    ]
    return pd.DataFrame(rows).set_index("rank").round(3)


def intact_heads(pairs: list, real: list) -> int:
    """Return how many heads of `real` still carry the component of a head in `real` after the exchange `pairs`.

    `pairs` is `[[target, source], ...]` as yielded by `exchange_edit`; heads not targeted keep their own.
    """
    members = {(int(layer), int(head)) for layer, head in real}
    source_of = {(int(t[0]), int(t[1])): (int(s[0]), int(s[1])) for t, s in pairs}
    return sum(source_of.get(head, head) in members for head in members)


def repetition_table(result: InterventionResult, real: list) -> pd.DataFrame:
    """One row per K, condition and repetition of a shuffle result: error, probability and `intact_heads(real)`."""
    record = result.record
    if record["experiment"] not in ("shuffle", "shuffle_sweep"):
        raise IHLibError(f"repetition_table needs a shuffle_exp or shuffle_sweep result, got {record['experiment']!r}.")
    sweep = record["experiment"] == "shuffle_sweep"
    Ks = record["Ks"] if sweep else [record["K"]]
    rows = []
    for condition in CONDITIONS:
        errs, probs = _per_repetition(result.errs[condition]), _per_repetition(result.probs[condition])
        for k, K in enumerate(Ks):
            for r in range(record["n_exp"]):
                pairs = (
                    []
                    if condition == "original"
                    else record["pairs"][condition][k][r]
                    if sweep
                    else (record["pairs"][condition][r])
                )
                rows.append(
                    {
                        "K": K,
                        "condition": condition,
                        "repetition": r,
                        "err": float(errs[k, r] if sweep else errs[r]),
                        "prob": float(probs[k, r] if sweep else probs[r]),
                        "intact real heads": intact_heads(pairs, real),
                    }
                )
    return pd.DataFrame(rows)


def reading(change: dict, tolerance: float) -> str:
    """Read an error change `{mean, low, high}`: "intact" (high < tolerance), "breaks" (low > tolerance), "unclear"."""
    if change["high"] < tolerance:
        return "intact"
    if change["low"] > tolerance:
        return "breaks"
    return "unclear"


def _at(stats: dict, i: int) -> dict:
    """Return entry `i` of a `{mean, low, high}` dict of arrays as floats."""
    return {key: float(np.asarray(value)[i]) for key, value in stats.items()}


def _interval(stats: dict, signed: bool = False) -> str:
    """Format `{mean, low, high}` as "0.02 [0.01, 0.03]": a rate, its interval clipped to [0, 1]; or, when `signed`,
    a change as "+0.02 [-0.01, +0.05]". Values that round to zero print without a minus sign."""
    low, high = (stats["low"], stats["high"]) if signed else (max(stats["low"], 0.0), min(stats["high"], 1.0))

    def fmt(value: float) -> str:
        return f"{round(value, 2) + 0.0:{'+' if signed else ''}.2f}"

    if np.isnan(stats["low"]):
        return fmt(stats["mean"]) + " (one repetition: no interval)"
    return f"{fmt(stats['mean'])} [{fmt(low)}, {fmt(high)}]"


def _sweep_kind(sweep: InterventionResult) -> tuple[str, str]:
    """Return `(component, kind)` of a `shuffle_sweep` result, or raise if it is another experiment."""
    record = sweep.record
    if record["experiment"] != "shuffle_sweep":
        raise IHLibError(f"Expected a shuffle_sweep result, got {record['experiment']!r}.")
    return record["component"], SCORE_KIND[record["component"]]


def shuffle_table(
    sweep: InterventionResult, scores: HeadScores, fraction: float = 0.5, tolerance: float = 0.1
) -> pd.DataFrame:
    """Per K of a `shuffle_sweep`: real heads among the K, error of each condition, readings and intact real heads.

    Real heads are `strong_heads(scores, kind, fraction)` of the sweep's kind. Errors are means with 95%
    intervals over repetitions; a reading compares the paired error change from the unedited model with
    `tolerance` (see `reading`); "intact real heads" is the mean of `intact_heads` over repetitions.
    """
    _, kind = _sweep_kind(sweep)
    record, summary = sweep.record, sweep.record["summary"]
    real = strong_heads(scores, kind, fraction)
    intact = repetition_table(sweep, real).groupby(["condition", "K"])["intact real heads"].mean()
    rows = []
    for k, K in enumerate(record["Ks"]):
        row = {"K": K, f"{kind} heads among the K": sum(h in real for h in record["heads"][:K])}
        for condition in CONDITIONS:
            row[f"error: {condition}"] = _interval(_at(summary[condition]["err"], k))
        for condition in CONDITIONS[1:]:
            row[f"{condition}: reading"] = reading(_at(summary[condition]["err_change"], k), tolerance)
            row[f"{condition}: intact {kind} heads"] = round(float(intact[condition, K]), 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index("K")


def _index_at_most(Ks: list[int], n: int) -> int:
    """Return the index of `n` in `Ks`, else of the largest K below `n`; raise when every K exceeds `n`."""
    below = [i for i, K in enumerate(Ks) if K <= n]
    if not below:
        raise IHLibError(f"The sweep's Ks {Ks} all exceed the {n} heads that count: include a K <= {n}.")
    return Ks.index(n) if n in Ks else below[-1]


def _first_k(Ks: list[int], readings: list[str], wanted: str, keep: Callable[[int], bool]) -> int | None:
    """Return the first K with `readings[k] == wanted` among the Ks that `keep(K)` accepts, or None."""
    return next((K for K, r in zip(Ks, readings, strict=True) if keep(K) and r == wanted), None)


def _a(word: str) -> str:
    """Return `word` with its indefinite article: "an induction head", "a shifting head"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _shuffle_component_verdict(
    sweep: InterventionResult, scores: HeadScores, fraction: float, tolerance: float
) -> Verdict:
    """Claim 3 for one component, read at K = number of real heads (see `shuffle_verdicts`)."""
    component, kind = _sweep_kind(sweep)
    summary, Ks = sweep.record["summary"], sweep.record["Ks"]
    real = strong_heads(scores, kind, fraction)
    n = len(real)
    claim = f"Claim 3 ({component} of {kind} heads)"
    if n < 2:
        return Verdict(
            claim,
            "not tested",
            f"Only {n} head counts as {_a(kind)} head on this model, so there is nothing to shuffle it with: the "
            f"invariance claim has no {kind} heads to hold for. Lower `fraction` or check chapter 0's scores.",
        )
    k = _index_at_most(Ks, n)
    K = Ks[k]
    d_shuffle, d_random = _at(summary["shuffle"]["err_change"], k), _at(summary["random baseline"]["err_change"], k)
    gap = mean_ci(_per_repetition(sweep.errs["random baseline"][k] - sweep.errs["shuffle"][k]))
    gap = {key: float(value) for key, value in gap.items()}
    errors = {c: _interval(_at(summary[c]["err"], k)) for c in CONDITIONS}
    scope = f"the {K} heads that count as {kind} heads" if K == n else f"the top {K} of the {n} {kind} heads"
    text = (
        f"Shuffling the {component} among {scope} changes the top-1 copying error by "
        f"{_interval(d_shuffle, signed=True)} (unedited {errors['original']}, shuffled {errors['shuffle']}); "
        f"giving them the {component} of random heads instead changes it by {_interval(d_random, signed=True)} "
        f"(error {errors['random baseline']}). A change counts as breaking copying when its 95% interval lies "
        f"above +{tolerance:.2f}, as harmless when it lies below."
    )
    if sweep.record["n_exp"] < 2:
        label, why = "not tested", ONE_REPETITION
    elif reading(d_random, tolerance) != "breaks":
        label = "not tested"
        why = "random heads do not clearly break copying at this K either, so the test cannot tell the two apart."
    elif reading(d_shuffle, tolerance) == "intact":
        label, why = "supported", "shuffling is harmless while random heads break copying."
    elif gap["low"] > tolerance:
        label = "partly supported"
        why = (
            f"shuffling hurts, but random heads hurt more by {_interval(gap, signed=True)}: the heads are "
            "interchangeable only in part."
        )
    else:
        label, why = "not supported", "shuffling hurts about as much as random heads."
    readings = {c: [reading(_at(summary[c]["err_change"], i), tolerance) for i in range(len(Ks))] for c in CONDITIONS}
    layers = sorted({layer for layer, _ in real})
    details = [
        f"Reading at K = {K}: {why} The {n} {kind} heads sit in layer(s) {', '.join(map(str, layers))}"
        + (
            ": all in one layer, where heads that attend alike are interchangeable whatever their subspaces."
            if len(layers) == 1
            else "."
        ),
        _redundancy_line(Ks, readings["random baseline"], n, component),
    ]
    beyond = _beyond_line(sweep, scores, fraction, readings["shuffle"])
    if beyond:
        details.append(beyond)
    details.append(_variance_line(sweep))
    return Verdict(claim, label, text, details)


def _redundancy_line(Ks: list[int], random_readings: list[str], n: int, component: str) -> str:
    """Say from which K, up to the real heads, random replacement breaks copying."""
    first = _first_k(Ks, random_readings, "breaks", lambda K: K <= n)
    if first is None:
        return f"Replacing the {component} of up to {n} top heads by random heads' never clearly breaks copying."
    if first == min(Ks):
        return f"Replacing the {component} of the top {first} heads by random heads' already breaks copying."
    return (
        f"Replacing the {component} of the top K heads by random heads' breaks copying only from K = {first} on: "
        "with fewer heads replaced, the heads left intact still copy (redundancy)."
    )


def _beyond_line(sweep: InterventionResult, scores: HeadScores, fraction: float, shuffle_readings: list[str]) -> str:
    """Say which heads follow the real ones in the ranking and what shuffling them does (empty if K stays within)."""
    component, kind = _sweep_kind(sweep)
    Ks, heads = sweep.record["Ks"], sweep.record["heads"]
    real = strong_heads(scores, kind, fraction)
    n = len(real)
    if max(Ks) <= n:
        return ""
    added = ", ".join(f"{head_label(*h)} ({head_role(scores, *h, fraction)})" for h in heads[n : max(Ks)])
    intact = repetition_table(sweep, real).query("condition == 'shuffle'").groupby("K")["intact real heads"].mean()
    first = _first_k(Ks, shuffle_readings, "breaks", lambda K: K > n)
    line = f"Beyond the {n} {kind} heads the ranking continues with {added}. "
    if first is None:
        return line + f"Shuffling them in never clearly breaks copying up to K = {max(Ks)}."
    line += (
        f"Shuffling first breaks copying at K = {first}: there, on average {intact[first]:.1f} of the {n} {kind} "
        f"heads still carry {_a(kind)} head's {component}"
    )
    other = "shifting" if kind == "induction" else "induction"
    n_other = sum(h in strong_heads(scores, other, fraction) for h in heads[:first])
    if n_other:
        line += f"; {n_other} of the shuffled heads count as {other} heads and lose their own {component}"
    return line + "."


def _variance_line(sweep: InterventionResult) -> str:
    """Say how far single repetitions spread where they spread most, against the 95% interval of their mean."""
    record = sweep.record
    spread = {(K, c): _per_repetition(sweep.errs[c][k]) for c in CONDITIONS[1:] for k, K in enumerate(record["Ks"])}
    (K, condition), values = max(spread.items(), key=lambda item: np.ptp(item[1]))
    stats = mean_ci(values)
    half = float(stats["high"] - stats["mean"])
    return (
        f"Variability: single repetitions spread most for '{condition}' at K = {K}, from {values.min():.2f} to "
        f"{values.max():.2f}; the mean of the {record['n_exp']} repetitions is {float(stats['mean']):.2f} ± "
        f"{half:.2f} (95%). One repetition, as in the seed, can land anywhere in that range."
    )


def shuffle_verdicts(
    sweeps: dict[str, InterventionResult],
    scores: HeadScores,
    fraction: float = 0.5,
    tolerance: float = 0.1,
    save_dir: str | Path | None = None,
) -> dict[str, Verdict]:
    """Claim 3 per component ("QK", "OV"): each `shuffle_sweep` read at K = its number of real heads.

    Real heads: `strong_heads(scores, kind, fraction)`. Supported: shuffling is harmless (error change below
    `tolerance`, 95% interval) while random heads break copying (change above it); partly: shuffling hurts,
    but less than random heads by more than `tolerance`; not supported: otherwise; not tested: fewer than two
    real heads, one repetition, or random heads do not break copying either. Saves `verdict.json` (a list).
    """
    verdicts = {c: _shuffle_component_verdict(sweeps[c], scores, fraction, tolerance) for c in sweeps}
    save_json(save_dir, "verdict", [v.record() for v in verdicts.values()])
    return verdicts


def decisive_rank(result: InterventionResult, tolerance: float = 0.1) -> int | None:
    """First rank at which the common subspace decides and the random one does not, or None.

    Project out: the common subspace breaks copying while a random one leaves it intact. Keep only: the
    common subspace keeps copying intact while a random one breaks it. Readings as in `reading`.
    """
    record = result.record
    if record["experiment"] != "project":
        raise IHLibError(f"decisive_rank needs a project_exp result, got {record['experiment']!r}.")
    wanted = ("breaks", "intact") if record["project_out"] else ("intact", "breaks")
    summary = record["summary"]
    for i, rank in enumerate(record["ranks"]):
        found = tuple(reading(_at(summary[s]["err_change"], i), tolerance) for s in SUBSPACES)
        if rank > 0 and found == wanted:
            return rank
    return None


def _edit_name(record: dict) -> str:
    """Name a projection edit, e.g. "QK: project out of W_k"."""
    where = "W_K" if record["component"] == "QK" else "W_O"
    return f"{record['component']}: {'project out of' if record['project_out'] else 'keep only in'} {where}"


def projection_table(results: list[InterventionResult], tolerance: float = 0.1) -> pd.DataFrame:
    """One row per `project_exp` result: the first decisive rank, and errors and energy at the rank shown.

    The rank shown is the first decisive rank, or the largest rank swept when there is none. Errors are means
    with 95% intervals over repetitions; "energy" is the share of the stacked `W_QK`'s squared singular values
    held by the top `rank` directions.
    """
    rows = []
    for result in results:
        record, summary = result.record, result.record["summary"]
        rank = decisive_rank(result, tolerance)
        shown = rank if rank is not None else record["ranks"][-1]
        i = record["ranks"].index(shown)
        row = {
            "edit": _edit_name(record),
            "heads edited": len(record["heads"]),
            "unedited error": _interval(_at(summary["common subspace"]["err"], 0)),
            "first decisive rank": rank if rank is not None else f"none up to {shown}",
            "rank shown": shown,
            "energy at rank shown": round(record["stack_energy_at_rank"][i], 3),
        }
        for s in SUBSPACES:
            row[f"error: {s}"] = _interval(_at(summary[s]["err"], i))
        rows.append(row)
    return pd.DataFrame(rows).set_index("edit")


def _projection_sentence(result: InterventionResult, tolerance: float) -> str:
    """One sentence on one projection run: where it decides, with errors of both subspaces there."""
    record, summary = result.record, result.record["summary"]
    rank = decisive_rank(result, tolerance)
    where = "keys (W_K)" if record["component"] == "QK" else "outputs (W_O)"
    heads = f"the {len(record['heads'])} heads' {where}"
    if record["project_out"]:
        action, success, control = f"Projecting it out of {heads}", "breaks copying", "leaves it intact"
    else:
        action, success, control = f"Keeping only it in {heads}", "keeps copying intact", "breaks it"
    errors = {
        s: _interval(_at(summary[s]["err"], record["ranks"].index(rank or record["ranks"][-1]))) for s in SUBSPACES
    }
    if rank is None:
        return (
            f"{action} never {success} at a rank where a random subspace of the same rank {control}, up to rank "
            f"{record['ranks'][-1]} (there: error {errors['common subspace']}, random subspace "
            f"{errors['random subspace']})."
        )
    i = record["ranks"].index(rank)
    return (
        f"{action} first {success} at rank {rank} (error {errors['common subspace']}, against "
        f"{_interval(_at(summary['common subspace']['err'], 0))} unedited), where a random subspace of the same rank "
        f"{control} (error {errors['random subspace']}); the top {rank} directions hold "
        f"{record['stack_energy_at_rank'][i]:.0%} of the stacked W_QK's energy."
    )


def projection_verdicts(
    results: list[InterventionResult], tolerance: float = 0.1, save_dir: str | Path | None = None
) -> dict[str, Verdict]:
    """Claim 4 per component: supported when projecting out breaks copying and keeping only suffices (each at some
    rank where a random subspace does not), partly when one of the two holds, not supported otherwise (not tested
    with one repetition).

    `results` holds `project_exp` results with project_out True and False per component. Saves `verdict.json`.
    """
    by_component: dict[str, dict[bool, InterventionResult]] = {}
    for result in results:
        by_component.setdefault(result.record["component"], {})[result.record["project_out"]] = result
    verdicts = {}
    for component, runs in by_component.items():
        if set(runs) != {True, False}:
            raise IHLibError(f"projection_verdicts needs both a project-out and a keep-only run for {component}.")
        found = sum(decisive_rank(runs[out], tolerance) is not None for out in (True, False))
        record = runs[True].record
        label = "not tested" if record["n_exp"] < 2 else ("not supported", "partly supported", "supported")[found]
        text = (
            f"The common subspace: top right singular directions of the stacked W_QK of {len(record['IH_proj'])} "
            f"induction heads. " + " ".join(_projection_sentence(runs[out], tolerance) for out in (True, False))
        )
        details = [f"Not read: {ONE_REPETITION}"] if record["n_exp"] < 2 else []
        details += [
            f"A change in top-1 error counts as breaking copying when its 95% interval lies above +{tolerance:.2f}, "
            "as harmless when it lies below; 'decisive' ranks are where the common and the random subspace of the "
            f"same rank give opposite readings. {record['n_exp']} repetitions of {record['batch_size']} sequences."
        ]
        verdicts[component] = Verdict(f"Claim 4 ({component}: {_target_heads(component)})", label, text, details)
    save_json(save_dir, "verdict", [v.record() for v in verdicts.values()])
    return verdicts


def _target_heads(component: str) -> str:
    """Name where a component's projection acts: IH keys or shifting-head outputs."""
    return "keys of induction heads" if component == "QK" else "outputs of shifting heads"
