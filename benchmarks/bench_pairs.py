"""Time the weight-space pair statistics of every composable head pair of a randomly initialised GPT-2-small.

One run prints, as ratios per pair:

- ihlib's path (`core.circuits.pair_statistics`: per-head `d x d` Gram blocks formed once, pairs from inner
  products, the weights' float32) against the old one (reproduced below: float64 factors of every pair, the
  `d_head x d_head` core and the Grams recomputed per pair), on `--old-pairs` of the pairs;
- against a dense float64 reference (every `d x d` product formed) on a small model, with the largest deviation;
- against TransformerLens 4's `TransformerBridge.all_composition_scores` on the same weights (K, and Q and V for
  agreement), where TransformerLens is installed (an optional benchmark-only dependency; the part is skipped with a
  message otherwise). The composition scores are checked against TransformerLens's. TransformerLens is called
  `--repeats` times in one process, like ihlib; its first call and its median call are both printed, with user and
  system CPU seconds (system time is the kernel's, mostly page faults on the fresh memory its pair products fill).

    nice -n 10 /work/tlvenv/bin/python benchmarks/bench_pairs.py   # a venv with transformer-lens and ihlib's deps

Times are wall-clock and CPU seconds (both printed): on a shared machine the CPU seconds of one thread are the ones
that do not depend on what else runs. ihlib and the old path run on one thread (`factored.single_threaded`);
TransformerLens gets `--tl-threads` (default 1, the same).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ihlib.core.circuits import composable_pairs, composition_scores, embedding_basis, pair_statistics
from ihlib.core.factored import single_threaded
from ihlib.model.weights import K, O, Q, V, head_weights, ov, qk

COMPOSITIONS = ("k_composition", "q_composition", "v_composition")
TIMED = ("z",) + COMPOSITIONS  # the set: z-score and the three composition scores


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are GPT-2-small (12 x 12 heads, d_model 768)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ihlib's path (median reported)")
    parser.add_argument("--old-pairs", type=int, default=1000, help="pairs the old path scores (per pair ratio)")
    parser.add_argument("--token-pairs", type=int, default=20, help="pairs the token-basis rate is timed on")
    parser.add_argument("--tl-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def random_gpt2(layers: int, heads: int, d_model: int, seed: int) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 (Hugging Face's initialisation, seeded) with the given shape."""
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=layers, n_head=heads, n_embd=d_model)
    return GPT2LMHeadModel(config).eval()


def call_usage(run: Callable[[], object]) -> tuple[float, float, float]:
    """One call's wall, user-CPU and system-CPU seconds (system time is mostly page faults of fresh memory)."""
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter() - wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def median_usage(calls: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The call with the median wall time among `calls` (wall, user, system)."""
    return sorted(calls)[len(calls) // 2]


def timed(run: Callable[[], object], repeats: int = 1) -> tuple[object, float, float]:
    """Run `repeats` times; return the last result and the median wall and CPU seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


# ---------------------------------------------------------------- the old path, as it was before issue 24

OLD_CHUNK = 64  # head pairs per batched step of the old path


def old_factors(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> tuple[torch.Tensor, ...]:
    """The old `qkov_factors`: float64 CPU `(A, C, B)` per pair, `A = W_q`, `C = W_k^T W_o`, `B = W_v`."""
    w_qk = torch.stack([W_all[l, h] for l, h in qk_heads]).detach().cpu().double()
    w_ov = torch.stack([W_all[l, h] for l, h in ov_heads]).detach().cpu().double()
    return w_qk[:, Q], w_qk[:, K].mT @ w_ov[:, O], w_ov[:, V]


def old_frobenius2(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The old `factored_frobenius2`: `trace(C^T A^T A C B^T B)` with both Grams recomputed per pair."""
    return (C.mT @ (A.mT @ A) @ C * (B.mT @ B)).sum((-2, -1))


def old_zscore(A: torch.Tensor, C: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The old `factored_diagonal_zscore` of `A C B^T`."""
    d = A.shape[-2]
    trace = (C * (B.mT @ A).mT).sum((-2, -1))
    total = ((A.sum(-2).unsqueeze(-2) @ C) * B.sum(-2).unsqueeze(-2)).sum((-2, -1))
    mean = total / d**2
    std = (old_frobenius2(A, C, B) / d**2 - mean**2).clamp_min(0).sqrt()
    return (trace / d - mean) / std


def old_k_composition(A, C, B, w_k, w_o) -> torch.Tensor:
    """The old `k_composition`: `||W_qk W_ov|| / (||W_qk|| ||W_ov||)` with every Gram recomputed per pair."""
    qk2 = ((A.mT @ A) * (w_k.mT @ w_k)).sum((-2, -1))
    ov2 = ((w_o.mT @ w_o) * (B.mT @ B)).sum((-2, -1))
    return (old_frobenius2(A, C, B) / (qk2 * ov2)).sqrt()


@torch.no_grad()
@single_threaded()
def old_pair_statistics(W_all: torch.Tensor, qk_heads: list, ov_heads: list) -> dict[str, np.ndarray]:
    """The old `pair_statistics` without `W_E`: z-score and K-composition, `OLD_CHUNK` pairs at a time, float64."""
    out: dict[str, list] = {"z": [], "k_composition": []}
    for start in range(0, len(qk_heads), OLD_CHUNK):
        qk_chunk, ov_chunk = qk_heads[start : start + OLD_CHUNK], ov_heads[start : start + OLD_CHUNK]
        A, C, B = old_factors(W_all, qk_chunk, ov_chunk)
        w_k = torch.stack([W_all[l, h, K] for l, h in qk_chunk]).detach().cpu().double()
        w_o = torch.stack([W_all[l, h, O] for l, h in ov_chunk]).detach().cpu().double()
        out["z"].append(old_zscore(A, C, B))
        out["k_composition"].append(old_k_composition(A, C, B, w_k, w_o))
    return {name: torch.cat(values).numpy() for name, values in out.items()}


# ---------------------------------------------------------------- dense float64 reference


def dense_zscore(M: torch.Tensor) -> float:
    """`(mean(diag M) - mean(M)) / std(M)` of a dense square matrix."""
    return float((torch.diagonal(M).mean() - M.mean()) / M.std(correction=0))


@torch.no_grad()
@single_threaded()
def dense_pair_statistics(W_all: torch.Tensor, W_E: torch.Tensor, qk_heads: list, ov_heads: list) -> dict:
    """Every statistic from dense float64 `d x d` products, pair by pair (the slow obvious way)."""
    W, E = W_all.double(), W_E.double()
    basis = embedding_basis(E)[1]
    out: dict[str, list] = {name: [] for name in ("z", "z_embedding", "token_wins") + COMPOSITIONS}
    for receiver, sender in zip(qk_heads, ov_heads, strict=True):
        W_qk, W_ov, W_ov_r = qk(W, *receiver), ov(W, *sender), ov(W, *receiver)
        M = W_qk @ W_ov
        out["z"].append(dense_zscore(M))
        out["z_embedding"].append(dense_zscore(basis.T @ M @ basis))
        out["token_wins"].append(float(((E @ M @ E.T).argmax(1) == torch.arange(len(E))).double().mean()))
        out["k_composition"].append(float(M.norm() / (W_qk.norm() * W_ov.norm())))
        out["q_composition"].append(float((W_qk.T @ W_ov).norm() / (W_qk.norm() * W_ov.norm())))
        out["v_composition"].append(float((W_ov_r @ W_ov).norm() / (W_ov_r.norm() * W_ov.norm())))
    return {name: np.array(values) for name, values in out.items()}


def largest_deviation(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest `|got - expected| / max(1, |expected|)`: relative, or absolute below 1 (z-scores cross 0)."""
    return float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))


# ---------------------------------------------------------------- the parts of the run


def time_ihlib(W_all: torch.Tensor, W_E: torch.Tensor, receivers: list, senders: list, args) -> dict:
    """ihlib's times over every composable pair: the four statistics, K alone, the token-basis rate per pair."""
    n = len(receivers)
    _, wall, cpu = timed(lambda: pair_statistics(W_all, receivers, senders, statistics=TIMED), args.repeats)
    print(f"ihlib pair_statistics, z + Q/K/V composition, {n} pairs: {wall:.2f} s wall, {cpu:.2f} s CPU")
    k_only = ("k_composition",)
    _, k_wall, k_cpu = timed(lambda: pair_statistics(W_all, receivers, senders, statistics=k_only), args.repeats)
    print(f"ihlib K-composition alone, {n} pairs: {k_wall:.2f} s wall, {k_cpu:.2f} s CPU")
    m = min(args.token_pairs, n)
    _, t_wall, t_cpu = timed(
        lambda: pair_statistics(W_all, receivers[:m], senders[:m], W_E=W_E, statistics=("token_wins",))
    )
    print(
        f"ihlib token-basis rate (4096 sampled tokens), {m} pairs: {t_wall:.2f} s wall, {t_cpu:.2f} s CPU, "
        f"{1e3 * t_wall / m:.0f} ms per pair (all {n}: about {t_wall / m * n / 60:.0f} min)"
    )
    return {"wall": wall, "cpu": cpu, "k_wall": k_wall, "k_cpu": k_cpu, "n": n}


def compare_old(W_all: torch.Tensor, receivers: list, senders: list, new: dict, args) -> None:
    """The old path on the first `--old-pairs` pairs: per-pair time ratio and agreement."""
    m = min(args.old_pairs, len(receivers))
    old, wall, cpu = timed(lambda: old_pair_statistics(W_all, receivers[:m], senders[:m]))
    ours = pair_statistics(W_all, receivers[:m], senders[:m])
    per_pair, per_pair_cpu = wall / m, cpu / m
    print(
        f"old path (z + K, float64, per-pair Grams), {m} pairs: {wall:.2f} s wall, {cpu:.2f} s CPU; "
        f"all {new['n']} pairs about {per_pair * new['n']:.0f} s wall, {per_pair_cpu * new['n']:.0f} s CPU. "
        f"Per pair, old / new: {per_pair / (new['wall'] / new['n']):.0f}x wall, "
        f"{per_pair_cpu / (new['cpu'] / new['n']):.0f}x CPU (new computing z + Q/K/V); "
        f"{per_pair / (new['k_wall'] / new['n']):.0f}x wall, {per_pair_cpu / (new['k_cpu'] / new['n']):.0f}x CPU "
        f"(new computing K only)"
    )
    for name in old:
        print(f"  {name}: largest deviation new vs old {largest_deviation(ours[name], old[name]):.1e}")


def compare_dense(args) -> None:
    """ihlib against dense float64 products on a small GPT-2 (4 x 8 heads, d_model 128, vocabulary 512)."""
    model = random_gpt2(4, 8, 128, args.seed)
    model.resize_token_embeddings(512)
    W_all, W_E = head_weights(model), model.transformer.wte.weight.detach()
    receivers, senders = composable_pairs(tuple(W_all.shape[:2]))
    stats = TIMED + ("z_embedding", "token_wins")
    reference, wall, cpu = timed(lambda: dense_pair_statistics(W_all, W_E, receivers, senders))
    ours, new_wall, new_cpu = timed(lambda: pair_statistics(W_all, receivers, senders, W_E=W_E, statistics=stats))
    ours64 = pair_statistics(W_all.double(), receivers, senders, W_E=W_E.double(), statistics=stats)
    print(
        f"dense float64 reference, small model (4 x 8 heads, d_model 128, 512 tokens), {len(receivers)} pairs, "
        f"every statistic: {wall:.2f} s wall, {cpu:.2f} s CPU; ihlib {new_wall:.3f} s wall, {new_cpu:.3f} s CPU: "
        f"{wall / new_wall:.0f}x wall, {cpu / new_cpu:.0f}x CPU"
    )
    for name in stats:
        print(
            f"  {name}: largest deviation float32 {largest_deviation(ours[name], reference[name]):.1e}, "
            f"float64 {largest_deviation(ours64[name], reference[name]):.1e}"
        )


def compare_transformer_lens(model: GPT2LMHeadModel, W_all: torch.Tensor, new: dict, args) -> None:
    """TransformerLens 4's `all_composition_scores` on the same weights: time (K) and agreement (Q, K, V)."""
    if importlib.util.find_spec("transformer_lens") is None:
        print("TransformerLens: not installed, skipped (pip install transformer-lens in a separate venv to compare)")
        return
    from transformer_lens.model_bridge import TransformerBridge

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        bridge = TransformerBridge.boot_transformers(folder, device="cpu")
    same = max(
        float((bridge.blocks[l].attn.W_Q.detach() - W_all[l, :, Q]).abs().max()) for l in range(W_all.shape[0])
    )  # the bridge's raw W_Q (n_head, d, d_head) against ihlib's split
    threads = torch.get_num_threads()
    torch.set_num_threads(args.tl_threads)
    try:
        with torch.no_grad():
            calls = [call_usage(lambda: bridge.all_composition_scores("K")) for _ in range(args.repeats)]
            tl = {kind: bridge.all_composition_scores(kind) for kind in ("Q", "K", "V")}
    finally:
        torch.set_num_threads(threads)
    n_tl = W_all.shape[0] ** 2 * W_all.shape[1] ** 2
    ours_per_pair = new["k_wall"] / new["n"]
    print(
        f"TransformerLens all_composition_scores('K'), {n_tl} ordered pairs, {args.tl_threads} thread(s), "
        f"{args.repeats} calls in one process (ihlib K: {1e6 * ours_per_pair:.0f} us per pair, median of "
        f"{args.repeats}):"
    )
    for label, (wall, user, system) in (("first call", calls[0]), ("median call", median_usage(calls))):
        print(
            f"  {label}: {wall:.1f} s wall ({user:.1f} s user, {system:.1f} s system). "
            f"Per pair, TransformerLens / ihlib K: {(wall / n_tl) / ours_per_pair:.0f}x wall"
        )
    ours = composition_scores(W_all)
    print(f"  same raw weights: the bridge's W_Q differs from ihlib's split by at most {same:.1e}")
    for kind, scores in ours.scores.items():
        theirs = tl[kind].scores.double().permute(2, 3, 0, 1).numpy()  # theirs: [sender, receiver]; ours: reverse
        mask = np.isfinite(scores)
        deviation = largest_deviation(scores[mask], theirs[mask])
        print(f"  {kind}-composition: largest deviation from TransformerLens over {mask.sum()} pairs {deviation:.1e}")


def main() -> None:
    """Build the model, run every part, print the ratios."""
    args = parse_args()
    model = random_gpt2(args.layers, args.heads, args.d_model, args.seed)
    W_all, W_E = head_weights(model), model.transformer.wte.weight.detach()
    receivers, senders = composable_pairs(tuple(W_all.shape[:2]))
    print(f"random GPT-2, {args.layers} x {args.heads} heads, d_model {args.d_model}, {W_all.dtype}")
    new = time_ihlib(W_all, W_E, receivers, senders, args)
    compare_old(W_all, receivers, senders, new, args)
    compare_dense(args)
    compare_transformer_lens(model, W_all, new, args)


if __name__ == "__main__":
    main()
