"""Time the full Claim-2 computation at GPT-2-small shapes: ihlib's batched path, the pre-redesign path, dense SVDs.

Random weights `(12, 12, 4, 768, 64)`, K = 10 IHs and 10 shifting heads, ranks 2, 3, 5, 10, methods
largest and mean, the three matchings (IH x IH, SH x SH, IH x SH), 50 baseline samples, no figures.
The reference does what the seed's helpers did: a dense `numpy.linalg.svd` of both `d_model x d_model`
products for every pair (listed pairs and random-head baseline pairs). It also checks that both agree.
The pre-redesign path (`chunked_subspaces`, reproduced here) computed the per-head SVDs lazily, 16 heads
per batch, into full-size float64 caches; the first batched path (`float64_batched_subspaces`, reproduced here)
converted all of `W_all` to float64 first. The ratios "old / new" compare them with today's one batched pass over
all heads (`core.factored.head_subspaces`: the Grams of the float32 factors, float64 on `d_head x d_head` cores), in
one run; the scores differ from the float64 paths' by about 1e-7 (printed).

    nice -n 10 python benchmarks/bench_subspace.py --reference-pairs 300  # full dense reference (minutes)
    nice -n 10 python benchmarks/bench_subspace.py                        # reference on 10 pairs per list, extrapolated

ihlib runs its factored algebra on one thread (see `ihlib.core.factored.single_threaded`). On a shared machine,
set OPENBLAS_NUM_THREADS=1 too: numpy's threaded dense SVD stalls under contention (20x slower measured on
2 busy cores), which would flatter the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from ihlib.claims.subspaces import match_subspaces
from ihlib.core.factored import SIDE_FACTORS, HeadSubspaces, head_subspaces, right_singular_subspace, single_threaded
from ihlib.heads.selection import draw_head_pairs
from ihlib.model.weights import K, O, Q, V


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are the GPT-2-small setting of the issue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 3, 5, 10])
    parser.add_argument("--num-samp", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the factored path (median reported)")
    parser.add_argument("--reference-pairs", type=int, default=10, help="time the dense reference on this many pairs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def random_setting(args: argparse.Namespace) -> tuple[torch.Tensor, list, list]:
    """Random GPT-2-like `W_all` (std 0.02) and two disjoint lists of K heads."""
    generator = torch.Generator().manual_seed(args.seed)
    d_head = args.d_model // args.heads
    W_all = 0.02 * torch.randn(args.layers, args.heads, 4, args.d_model, d_head, generator=generator)
    order = np.random.default_rng(args.seed).permutation(args.layers * args.heads)
    heads = [[int(i) // args.heads, int(i) % args.heads] for i in order[: 2 * args.K]]
    return W_all, heads[: args.K], heads[args.K :]


MATCHINGS = {"IH x IH": (True, False), "SH x SH": (False, True), "IH x SH": (True, True)}  # (use IHs, use SHs)


HEAD_CHUNK = 16  # heads per batched SVD step in the pre-redesign path


@torch.no_grad()
@single_threaded()
def chunked_subspaces(W_all: torch.Tensor, IH_list: list, SH_list: list, args: argparse.Namespace) -> HeadSubspaces:
    """The pre-redesign path: full-size float64 caches, filled 16 heads at a time for the heads the matchings read.

    Those are the listed heads and the heads of the random-head baselines (drawn as `match_subspaces` draws them);
    converting each chunk to float64 and the Python bookkeeping around it is what the batched pass removes.
    """
    n_layer, n_head, _, d_model, _ = W_all.shape
    rank = max(args.ranks)
    bases = {side: torch.zeros(n_layer, n_head, d_model, rank, dtype=torch.float64) for side in SIDE_FACTORS}
    values = {side: torch.zeros(n_layer, n_head, rank, dtype=torch.float64) for side in SIDE_FACTORS}
    ready = {side: np.zeros((n_layer, n_head), dtype=bool) for side in SIDE_FACTORS}
    needed = {"key": [], "output": []}
    for mode, (use_ih, use_sh) in MATCHINGS.items():
        rows, cols = (IH_list if use_ih else SH_list), (SH_list if use_sh else IH_list)
        rng = np.random.default_rng(args.seed).spawn(2)[1]
        pairs, _ = draw_head_pairs((n_layer, n_head), rows + cols, args.num_samp, rng)
        row_side, col_side = SIDES[mode]
        needed[row_side] += rows + pairs[:, 0].tolist()
        needed[col_side] += cols + pairs[:, 1].tolist()
    for side, heads in needed.items():
        heads = np.asarray(heads).reshape(-1, 2)
        missing = np.unique(heads[~ready[side][heads[:, 0], heads[:, 1]]], axis=0)
        first, second = SIDE_FACTORS[side]
        for start in range(0, len(missing), HEAD_CHUNK):
            chunk = missing[start : start + HEAD_CHUNK]
            layers, cols = torch.from_numpy(chunk[:, 0]), torch.from_numpy(chunk[:, 1])
            A, B = W_all[layers, cols, first].double(), W_all[layers, cols, second].double()
            values[side][layers, cols], bases[side][layers, cols] = right_singular_subspace(A, B, rank)
            ready[side][chunk[:, 0], chunk[:, 1]] = True
    return HeadSubspaces(bases, values, int(W_all.shape[-1]))


def matchings(subspaces: HeadSubspaces, IH_list: list, SH_list: list, args: argparse.Namespace) -> dict:
    """The three matchings (IH x IH, SH x SH, IH x SH) with both baselines, from per-head subspaces."""
    return {
        mode: match_subspaces(
            subspaces,
            IH_list=IH_list if use_ih else None,
            Shifting_list=SH_list if use_sh else None,
            ranks=args.ranks,
            num_samp=args.num_samp,
            seed=args.seed,
        )
        for mode, (use_ih, use_sh) in MATCHINGS.items()
    }


@torch.no_grad()
@single_threaded()
def float64_batched_subspaces(W_all: torch.Tensor, max_rank: int) -> HeadSubspaces:
    """The first batched path: all of `W_all` in float64, then one `right_singular_subspace` per side for all heads."""
    W = W_all.double()
    bases, values = {}, {}
    for side, (first, second) in SIDE_FACTORS.items():
        values[side], bases[side] = right_singular_subspace(W[:, :, first], W[:, :, second], max_rank)
    return HeadSubspaces(bases, values, int(W_all.shape[-1]))


def factored_claim2(W_all: torch.Tensor, IH_list: list, SH_list: list, args: argparse.Namespace) -> dict:
    """ihlib's path: one batched SVD pass over all heads, then the three matchings without figures."""
    return matchings(head_subspaces(W_all, max(args.ranks)), IH_list, SH_list, args)


def chunked_claim2(W_all: torch.Tensor, IH_list: list, SH_list: list, args: argparse.Namespace) -> dict:
    """The pre-redesign path: lazily chunked per-head SVDs, then the same three matchings."""
    return matchings(chunked_subspaces(W_all, IH_list, SH_list, args), IH_list, SH_list, args)


def float64_claim2(W_all: torch.Tensor, IH_list: list, SH_list: list, args: argparse.Namespace) -> dict:
    """The first batched path: every head in float64 at once, then the same three matchings."""
    return matchings(float64_batched_subspaces(W_all, max(args.ranks)), IH_list, SH_list, args)


PATHS = {  # name: (run, description)
    "new": (factored_claim2, "batched Grams of the float32 factors, float64 cores"),
    "old": (chunked_claim2, f"pre-redesign, chunks of {HEAD_CHUNK} heads in float64"),
    "float64 batched": (float64_claim2, "first batched path, all of W_all in float64"),
}


def dense_basis(W_all: torch.Tensor, head: list, side: str, rank: int) -> np.ndarray:
    """Seed-style: dense SVD of the `d x d` product; key = top right singular vectors of W_qk, output = left of W_ov."""
    w = W_all[head[0], head[1]].double().numpy()
    if side == "key":
        return np.linalg.svd(w[Q] @ w[K].T)[2][:rank].T
    return np.linalg.svd(w[O] @ w[V].T)[0][:, :rank]


def dense_scores(basis0: np.ndarray, basis1: np.ndarray, ranks: list[int]) -> np.ndarray:
    """Scores `(2, R)` (largest, mean) of two bases, one small SVD per rank."""
    out = np.zeros((2, len(ranks)))
    for j, r in enumerate(ranks):
        s = np.linalg.svd(basis0[:, :r].T @ basis1[:, :r], compute_uv=False)
        out[:, j] = s[0], np.sqrt(np.mean(s**2))
    return out


def reference_pair(W_all: torch.Tensor, head0: list, side0: str, head1: list, side1: str, ranks: list) -> np.ndarray:
    """Recompute both heads' dense SVDs for this one pair, as the seed's helpers did; scores `(2, R)`."""
    r_max = max(ranks)
    return dense_scores(dense_basis(W_all, head0, side0, r_max), dense_basis(W_all, head1, side1, r_max), ranks)


def reference_gaussian(d_model: int, ranks: list[int], num_samp: int, rng: np.random.Generator) -> np.ndarray:
    """Seed-style Gaussian baseline: fresh random subspaces per sample and rank, `(2, R, num_samp)`."""
    out = np.zeros((2, len(ranks), num_samp))
    for i in range(num_samp):
        for j, r in enumerate(ranks):
            a = np.linalg.qr(rng.standard_normal((d_model, r)))[0]
            b = np.linalg.qr(rng.standard_normal((d_model, r)))[0]
            out[:, j, i] = dense_scores(a, b, [r])[:, 0]
    return out


SIDES = {"IH x IH": ("key", "key"), "SH x SH": ("output", "output"), "IH x SH": ("key", "output")}


def reference_claim2(W_all: torch.Tensor, fast: dict, args: argparse.Namespace) -> dict:
    """Run the reference on the same pairs as `fast` (all, or the first `--reference-pairs` of each list).

    Returns seconds spent on pairs and on Gaussian baselines, pairs done and in total, and the largest
    difference from the factored scores.
    """
    rng = np.random.default_rng(args.seed)
    limit = args.reference_pairs
    stats = {"pair_s": 0.0, "gaussian_s": 0.0, "done": 0, "total": 0, "max_diff": 0.0}
    for result in fast.values():
        row_side, col_side = SIDES[result.mode]
        grid = [(i, j) for i in range(len(result.row_heads)) for j in range(len(result.col_heads))]
        jobs = [(result.row_heads[i], result.col_heads[j], result.s_match[:, :, i, j]) for i, j in grid[:limit]]
        pairs = result.head_baseline_pairs.tolist()
        jobs += [(h0, h1, result.head_baseline[:, :, n]) for n, (h0, h1) in enumerate(pairs[:limit])]
        stats["total"] += len(grid) + len(pairs)
        stats["done"] += len(jobs)
        start = time.perf_counter()
        for head0, head1, expected in jobs:
            scores = reference_pair(W_all, head0, row_side, head1, col_side, args.ranks)
            stats["max_diff"] = max(stats["max_diff"], float(np.abs(scores - expected).max()))
        stats["pair_s"] += time.perf_counter() - start
        start = time.perf_counter()
        reference_gaussian(W_all.shape[3], args.ranks, args.num_samp, rng)
        stats["gaussian_s"] += time.perf_counter() - start
    return stats


def main() -> None:
    """Time every path in one run (interleaved) and print medians, ratios to the new path and score differences."""
    args = parse_args()
    W_all, IH_list, SH_list = random_setting(args)
    print(
        f"W_all {tuple(W_all.shape)}, K={args.K}, ranks {args.ranks}, {args.num_samp} baseline samples; "
        f"cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    results = {name: run(W_all, IH_list, SH_list, args) for name, (run, _) in PATHS.items()}
    fast = results["new"]
    times = {name: [] for name in PATHS}
    for _ in range(args.repeats):
        for name, (run, _) in PATHS.items():
            start = time.perf_counter()
            run(W_all, IH_list, SH_list, args)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, (_, description) in PATHS.items():
        diff = max(float(np.abs(results[name][m].s_match - fast[m].s_match).max()) for m in MATCHINGS)
        print(
            f"{name} ({description}): median {medians[name]:.3f} s, min {min(times[name]):.3f} s "
            f"over {args.repeats} runs; ratio {name} / new {medians[name] / medians['new']:.2f}x; "
            f"max |score - new| {diff:.1e}"
        )
    fast_s = medians["new"]
    ref = reference_claim2(W_all, fast, args)
    ref_s = ref["pair_s"] * ref["total"] / ref["done"] + ref["gaussian_s"]
    how = "measured" if ref["done"] == ref["total"] else f"extrapolated from {ref['done']}"
    print(f"reference (dense SVDs per pair): {ref_s:.1f} s for {ref['total']} pairs ({how})")
    print(f"max |factored - reference| over the {ref['done']} pairs checked: {ref['max_diff']:.2e}")
    print(f"ratio reference / new: {ref_s / fast_s:.0f}x")


if __name__ == "__main__":
    main()
