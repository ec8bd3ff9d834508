"""Robustness runs of a language-model recipe: seeds, and the same seeds under perturbed arithmetic.

Usage: python scripts/robustness_language.py OUT_DIR [--recipe adaptive] [--seeds 0 1 2 3 4]
           [--kinds plain threads2 nudge avx2] [--workers 2] [--steps N]
Each run is one process (`nice`, 1 thread unless its kind says 2) writing OUT_DIR/<kind>_s<seed>.json as it goes
(phase changes, per-layer best scores every checkpoint) and, when done, its evaluation and the targets it missed.
`OUT_DIR/summary.json` then counts, per kind, the runs that met each target. Kinds: "plain" (1 thread), "threads2"
(2 threads: another summation order), "nudge" (initial weights nudged by Gaussian noise of std 1e-6) and "avx2"
(ATen's AVX2 kernels on a CPU that has AVX-512: the arithmetic of a CPU without it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

KINDS = {
    "plain": {"threads": 1, "nudge": 0.0, "env": {}},
    "threads2": {"threads": 2, "nudge": 0.0, "env": {}},
    "nudge": {"threads": 1, "nudge": 1e-6, "env": {}},
    "avx2": {"threads": 1, "nudge": 0.0, "env": {"ATEN_CPU_CAPABILITY": "avx2"}},
}
TARGETS = (
    "induction heads in at least 2 layers",
    "every layer with induction heads holds at least 2 heads of neither kind",
    "shifting heads in a layer before some induction heads",
    "copying top-1 >= 0.9",
    "word loss below the bigram entropy",
)


def cpu_model() -> str:
    """The CPU's model name (`lscpu`), to tell machines apart."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def run_one(recipe: str, kind: str, seed: int, steps: int | None, out_dir: Path) -> None:
    """Train one run in this process and write its record to `out_dir/<kind>_s<seed>.json`."""
    import torch

    from ihlib.training.language_trainer import RECIPES, evaluate, train_language

    settings = KINDS[kind]
    torch.set_num_threads(settings["threads"])
    cfg = dataclasses.replace(RECIPES[recipe], seed=seed, init_nudge=settings["nudge"])
    cfg = cfg if steps is None else dataclasses.replace(cfg, steps=steps)
    path = out_dir / f"{kind}_s{seed}.json"
    head = {"name": path.stem, "recipe": recipe, "kind": kind, "seed": seed, "threads": settings["threads"]}
    head |= {"nudge": settings["nudge"], "cpu": cpu_model(), "torch": torch.__version__, "steps": cfg.steps}
    head |= {"cpu_capability": torch.backends.cpu.get_cpu_capability()}

    def progress(checkpoints: list[dict]) -> None:
        path.write_text(json.dumps({**head, "finished": False, "checkpoints": _best_by_layer(checkpoints)}))

    model, log = train_language(cfg, progress=False, on_checkpoint=progress)
    report = evaluate(model, cfg).record()
    record = {**head, "finished": True, "seconds": log["seconds"], "phases": log.get("phases", []), **report}
    path.write_text(json.dumps({**record, "checkpoints": _best_by_layer(log["checkpoints"])}, indent=1))


def _best_by_layer(checkpoints: list[dict]) -> list[dict]:
    """Per checkpoint: step, loss and per layer the best induction and shifting score."""
    return [
        {
            "step": c["step"],
            "loss": c["loss"],
            "phase": c.get("phase"),
            "induction_by_layer": [round(max(row), 3) for row in c["induction"]],
            "shifting_by_layer": [round(max(row), 3) for row in c["shifting"]],
        }
        for c in checkpoints
    ]


def summarise(out_dir: Path) -> dict:
    """Per kind: runs finished, runs meeting every target, and runs meeting each target."""
    runs = [json.loads(path.read_text()) for path in sorted(out_dir.glob("*_s*.json"))]
    summary = {}
    for kind in KINDS:
        done = [run for run in runs if run["kind"] == kind and run["finished"]]
        met = {t: sum(not any(m.startswith(t) for m in run["missed_targets"]) for run in done) for t in TARGETS}
        summary[kind] = {
            "started": sum(run["kind"] == kind for run in runs),
            "finished": len(done),
            "met_every_target": sum(not run["missed_targets"] for run in done),
            "met": met,
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    """Run every (kind, seed) with at most `--workers` processes at a time, then write the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--recipe", default="adaptive")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args.recipe, args.one[0], int(args.one[1]), args.steps, args.out)
        return
    queue = [(kind, seed) for kind in args.kinds for seed in args.seeds]
    running: list[subprocess.Popen] = []
    while queue or running:
        while queue and len(running) < args.workers:
            kind, seed = queue.pop(0)
            env = {**os.environ, "OMP_NUM_THREADS": str(KINDS[kind]["threads"]), **KINDS[kind]["env"]}
            command = ["nice", "-n", "5", sys.executable, __file__, str(args.out), "--recipe", args.recipe]
            command += ["--one", kind, str(seed)] + ([] if args.steps is None else ["--steps", str(args.steps)])
            log = (args.out / f"{kind}_s{seed}.log").open("w")
            running.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(10)
        running = [proc for proc in running if proc.poll() is None]
    print(json.dumps(summarise(args.out), indent=1))


if __name__ == "__main__":
    main()
