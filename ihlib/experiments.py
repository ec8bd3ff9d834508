"""Claims 3 and 4 by intervention: shuffle heads' QK/OV components (invariance) and project a subspace (pathway).

Every experiment repeats `n_exp` times. Repetition `r` draws its own batch of repeated random tokens
(seeded by `seed` and `r`) and scores every condition on that same batch (paired comparison), with
fresh permutations, random heads or random subspaces. Uncertainty: mean across repetitions of the
per-repetition mean (over samples and positions) with a 95% Student t-interval (`mean_ci`).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from ihlib.data import copy_positions, repeated_tokens
from ihlib.edits import check_component, exchange_edit, projection_edit, random_candidates, validated_heads
from ihlib.errors import IHLibError
from ihlib.metrics import pred_probs
from ihlib.models import AnyGPT2
from ihlib.plots import save_arrays, save_figure, save_json
from ihlib.plots_experiments import plot_by_position, plot_over_k, plot_rank_sweep
from ihlib.scoring import HeadScores, check_k, head_scores
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


def head_strength(heads: list, scores: HeadScores | None, kind: str, threshold: float) -> dict:
    """Return `{kind, threshold, scores, n_strong}` for `heads`: how many score at least `threshold` as `kind` heads."""
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
            f"{what}: only {n_strong} of the {n} heads score >= {strength['threshold']} as {strength['kind']} heads; "
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
    threshold: float = 0.5,
    chunk_size: int = 64,
    progress: bool = True,
) -> InterventionResult:
    """Shuffle the `component` ("QK" or "OV") of `heads` among themselves or replace it by random heads'; score copying.

    Returns probs/errs `{"original", "shuffle", "random baseline": (n_exp, batch, n_positions)}`; each
    repetition draws a fresh derangement and fresh random heads (from `pool`, default all other heads).
    The record says how many heads score >= `threshold` (induction for QK, shifting for OV; `scores`
    computed when not given). Writes `shuffle_{component}_K{K}_T{seg_len}.{png,json,npz}` to `save_dir`.
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
        n_exp=n_exp,
        batch_size=batch_size,
        seg_len=seg_len,
        rep=rep,
        burn_in=burn_in,
        vocab_size=vocab_size,
        seed=seed,
        positions=positions,
        summary=condition_summary(probs, errs, _per_repetition(errs["original"])),
        by_position=by_position(probs, errs),
        pairs={kind: rows[0] for kind, rows in pairs.items()},
    )
    title = (
        f"Shuffling {component} of K={K} heads ({strength['n_strong']} with {strength['kind']} score "
        f">= {threshold})\nmean and 95% band over {n_exp} repetitions"
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
    threshold: float = 0.5,
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
        n_exp=n_exp,
        batch_size=batch_size,
        seg_len=seg_len,
        rep=rep,
        burn_in=burn_in,
        vocab_size=vocab_size,
        seed=seed,
        positions=positions,
        summary=condition_summary(probs, errs, _per_repetition(errs["original"])),
        pairs=pairs,
    )
    title = (
        f"Shuffling {component} of the top K {SCORE_KIND[component]} heads\n"
        f"mean and 95% interval over {n_exp} repetitions"
    )
    figure = plot_over_k(Ks, record["summary"], n_strong, threshold, title)
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
    threshold: float = 0.5,
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
        n_exp=n_exp,
        batch_size=batch_size,
        seg_len=seg_len,
        rep=rep,
        burn_in=burn_in,
        vocab_size=vocab_size,
        seed=seed,
        positions=positions,
        summary=condition_summary(probs, errs, _per_repetition(errs["common subspace"][0])),
    )
    action = "Projecting out" if project_out else "Keeping only"
    where = "W_k" if component == "QK" else "W_o"
    title = (
        f"{action} the common subspace of {len(IH_proj)} IHs' W_qk in {where} of {len(heads)} heads, "
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
