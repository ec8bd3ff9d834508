"""Time chapter 0's calls on the embedded copy model and on a random model with GPT-2 small's shapes.

GPT-2 itself cannot be downloaded on the machines that build the book; a randomly initialised model with its
shapes (12 layers x 12 heads, d_model 768, 50,257 tokens, 1,024 positions) does the same arithmetic. Prints, per
call, the wall-clock and the CPU time of this process (steadier on a shared machine) and the GPT-2 / copy ratio,
as JSON. The book's page "This model and GPT-2" quotes these numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from transformers import GPT2Config

from ihlib.heads.scoring import scores_by_position
from ihlib.model.loading import load_model, new_model
from ihlib.tools.losses import position_loss


def timed(call: Callable[[], object]) -> dict[str, float]:
    """Run `call` once; return its wall-clock and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main() -> None:
    """Time `scores_by_position` and `position_loss` at chapter 0's defaults on both models; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=50, help="sequences per call (chapter 0: 50)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"ihlib-copy": load_model("ihlib-copy", device="cpu"), "gpt2-shaped": new_model(GPT2Config()).eval()}
    calls = {
        "scores_by_position": lambda m: scores_by_position(m, batch_size=args.batch_size, seg_len=25, rep=3),
        "position_loss": lambda m: position_loss(m, batch_size=args.batch_size, seg_len=25, rep=3, n_boot=200),
    }
    report: dict[str, object] = {"threads": args.threads, "batch_size": args.batch_size}
    for call_name, call in calls.items():
        times = {name: timed(lambda model=model, call=call: call(model)) for name, model in models.items()}
        ratio = times["gpt2-shaped"]["cpu_s"] / times["ihlib-copy"]["cpu_s"]
        report[call_name] = {**times, "cpu_ratio": ratio}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
