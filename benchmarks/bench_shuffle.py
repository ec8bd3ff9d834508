"""Time `shuffle_exp` at GPT-2-small shapes (random weights) against plain forwards and the straightforward way.

- plain: one batched forward per condition over the same batches (body + logits at the scored positions), no edit;
- straightforward (the reference code's way): per condition, reload the model from disk, edit it, and run the
  samples one at a time through the full LM head.

Prints both ratios, in wall-clock and in CPU time of this process (steadier on a shared machine); goal:
shuffle_exp <= 1.2x plain and >= 5x faster than the straightforward way. `--help` lists the sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import matplotlib
import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ihlib.claims.shuffling import shuffle
from ihlib.core.copying import CopyingSettings
from ihlib.core.edits import exchange_edit
from ihlib.model.batches import copy_positions
from ihlib.model.loading import new_model

matplotlib.use("Agg")


def gpt2_small(seed: int = 0) -> GPT2LMHeadModel:
    """Return a randomly initialised model with GPT-2 small's shapes (12 x 12 heads, d_model 768, vocab 50257)."""
    torch.manual_seed(seed)
    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return new_model(config).eval()


class Timer:
    """Context manager measuring wall-clock and process CPU seconds."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def plain_forwards(model: GPT2LMHeadModel, batches: list, positions: np.ndarray, n_conditions: int) -> list:
    """Run `n_conditions` batched forwards per batch: body, then logits at the scored positions only."""
    pos = torch.as_tensor(positions)
    outputs = []
    with torch.no_grad():
        for ids in batches:
            for _ in range(n_conditions):
                logits = model.lm_head(model.transformer(ids).last_hidden_state[:, pos])
                log_p = torch.log_softmax(logits, -1).gather(-1, ids[:, pos + 1].unsqueeze(-1))
                outputs.append((log_p.exp(), logits.argmax(-1)))
    return outputs


def straightforward(path: str, batches: list, positions: np.ndarray, heads: list, component: str, seed: int) -> dict:
    """Run the reference way (reload per condition, samples one by one, full logits); return the top-1 errors."""
    pos = torch.as_tensor(positions)
    probs: dict[str, list] = {"original": [], "shuffle": [], "random baseline": []}
    errs: dict[str, list] = {kind: [] for kind in probs}
    for r, ids in enumerate(batches):
        for c, kind in enumerate(errs):
            model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").eval()
            rng = np.random.default_rng([seed, r, len(heads), c - 1]) if c else None
            with torch.no_grad(), exchange_edit(model, heads, component, kind, rng):
                for sample in ids:
                    logits = model(sample.unsqueeze(0)).logits[0]
                    probs[kind].append(torch.softmax(logits, -1)[pos, sample[pos + 1]].numpy())
                    errs[kind].append((logits[pos].argmax(-1) != sample[pos + 1]).float().numpy())
    return {k: np.array(v) for k, v in errs.items()}


def main() -> None:
    """Run the three timings on the same batches and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-exp", type=int, default=2, help="repetitions (each: original, shuffle, random)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seg-len", type=int, default=20)
    parser.add_argument("--k", type=int, default=10, help="number of heads shuffled")
    parser.add_argument("--component", default="QK", choices=["QK", "OV"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed, rep, burn_in = 0, 3, 4
    model = gpt2_small()
    vocab = model.config.vocab_size
    heads = [[layer, head] for layer in range(1, 11) for head in range(12)][:: 120 // args.k][: args.k]
    settings = CopyingSettings(args.seg_len, rep, args.batch_size, burn_in, args.n_exp, seed, vocab)
    batches = settings.batches()
    positions = copy_positions(args.seg_len, rep, burn_in)
    n_conditions = 3
    print(
        f"GPT-2 small shapes, {torch.get_num_threads()} threads: K={args.k} {args.component}, n_exp={args.n_exp}, "
        f"batch {args.batch_size} x {rep * args.seg_len} tokens, {n_conditions * args.n_exp} conditions"
    )
    plain_forwards(model, batches[:1], positions, 1)  # warm-up
    with Timer() as ours:
        result = shuffle(model, heads, component=args.component, settings=settings, progress=False)
    with Timer() as plain:
        plain_forwards(model, batches, positions, n_conditions)
    with tempfile.TemporaryDirectory() as path:
        model.save_pretrained(path)
        with Timer() as slow:
            slow_errs = straightforward(path, batches, positions, heads, args.component, seed)
    for kind, errs in slow_errs.items():
        agreement = np.mean(errs == result.errs[kind].reshape(errs.shape))
        print(f"  {kind:>15}: straightforward and shuffle_exp agree on {agreement:.4f} of the top-1 errors")
    for name, t in (("shuffle_exp", ours), ("plain forwards", plain), ("straightforward", slow)):
        print(f"{name:<16} wall {t.wall:8.2f} s   cpu {t.cpu:8.2f} s")
    print(
        f"ratio shuffle_exp / plain forwards     = {ours.wall / plain.wall:.2f}x wall, "
        f"{ours.cpu / plain.cpu:.2f}x cpu  (goal <= 1.2x)"
    )
    print(
        f"speed-up straightforward / shuffle_exp = {slow.wall / ours.wall:.2f}x wall, "
        f"{slow.cpu / ours.cpu:.2f}x cpu  (goal >= 5x)"
    )


if __name__ == "__main__":
    main()
