"""Sweep language-model training variants in parallel (one process each, on the GPU when there is one).

Usage: python scripts/sweep_language.py OUT_DIR [--steps N] [--deadline SECONDS] [--only NAME ...]
Writes OUT_DIR/<variant>.json (configuration, evaluation, head-score checkpoints) as each run finishes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import time
from pathlib import Path

import torch

from ihlib.training.copy_trainer import save
from ihlib.training.language_trainer import LanguageTrainConfig, evaluate, train_language
from ihlib.training.synthetic_language import LanguageConfig, provenance

BASE = LanguageTrainConfig(  # first sweeps: mixed from the start, every head on the copy rows
    copy_fraction=0.25, copy_only_steps=0, copy_heads=None, all_heads_copy_from=None, silence_phases=()
)
LANG = LanguageConfig()
VARIANTS: dict[str, LanguageTrainConfig] = {
    "base_s0": BASE,
    "base_s1": dataclasses.replace(BASE, seed=1),
    "base_s2": dataclasses.replace(BASE, seed=2),
    "copy50_s0": dataclasses.replace(BASE, copy_fraction=0.5),
    "copy50_s1": dataclasses.replace(BASE, copy_fraction=0.5, seed=1),
    "copyfirst_s0": dataclasses.replace(BASE, copy_only_steps=1000),
    "copyfirst_s1": dataclasses.replace(BASE, copy_only_steps=1000, seed=1),
    "nocopy_s0": dataclasses.replace(BASE, copy_fraction=0.0),
    "nocopy_morerepeats_s0": dataclasses.replace(
        BASE, copy_fraction=0.0, language=dataclasses.replace(LANG, name_rate=0.15, copy_rate=0.9)
    ),
    "batch64_s0": dataclasses.replace(BASE, batch_size=64),
    "copyweight3_s0": dataclasses.replace(BASE, copy_weight=3.0),
    "lr2e-3_s0": dataclasses.replace(BASE, lr=2e-3),
    "layers5_s0": dataclasses.replace(BASE, n_layer=5),
    "copy12_s0": dataclasses.replace(BASE, copy_fraction=0.125),
    "morenames_s0": dataclasses.replace(BASE, language=dataclasses.replace(LANG, names_per_doc=8, name_rate=0.15)),
    "noisy_s0": dataclasses.replace(BASE, language=dataclasses.replace(LANG, noise=0.2)),
}
COPY_FIRST = dataclasses.replace(BASE, copy_only_steps=1000)
VARIANTS |= {
    "copyfirst_s2": dataclasses.replace(COPY_FIRST, seed=2),
    "copyfirst_layers5_s0": dataclasses.replace(COPY_FIRST, n_layer=5),
    "copyfirst_layers5_s1": dataclasses.replace(COPY_FIRST, n_layer=5, seed=1),
    "copyfirst_copy50_s0": dataclasses.replace(COPY_FIRST, copy_fraction=0.5),
    "copyfirst2000_s0": dataclasses.replace(COPY_FIRST, copy_only_steps=2000),
    "copyfirst_heads4_layers5_s0": dataclasses.replace(COPY_FIRST, n_layer=5, n_head=4),
    "copyfirst_morenames_s0": dataclasses.replace(
        COPY_FIRST, language=dataclasses.replace(LANG, names_per_doc=8, name_rate=0.15, copy_rate=0.8)
    ),
    "copyfirst_nocopyafter_s0": dataclasses.replace(COPY_FIRST, copy_fraction=0.0),
}

HEADS4 = dataclasses.replace(BASE, copy_heads=4)  # CPU trials of 2026-11-27: heads 4-7 never see copy rows
THREE_PHASES = dataclasses.replace(
    HEADS4,
    copy_only_steps=2250,
    all_heads_copy_from=3250,
    silence_phases=((0, ((2,), (3,))), (750, ((1,),)), (2250, ((1,), (2, 3)))),
)
VARIANTS |= {
    "heads4_alt23_s0": dataclasses.replace(HEADS4, copy_only_steps=1250, silence_phases=((0, ((2,), (3,))),)),
    "heads4_alt123_s0": dataclasses.replace(HEADS4, copy_only_steps=1250, silence_phases=((0, ((1,), (2,), (3,))),)),
    "heads4_no1_alt23_s0": dataclasses.replace(HEADS4, copy_only_steps=1250, silence_phases=((0, ((1, 2), (1, 3))),)),
    "heads4_no1_alt23_long_s1": dataclasses.replace(
        HEADS4, copy_only_steps=2000, silence_phases=((0, ((1, 2), (1, 3))),), seed=1
    ),
    "heads4_no23_then_no1_s0": dataclasses.replace(
        HEADS4, copy_only_steps=1500, silence_phases=((0, ((2, 3),)), (750, ((1,),)), (1500, ((1,), (2, 3))))
    ),
    "heads4_three_phases_s0": dataclasses.replace(THREE_PHASES, all_heads_copy_from=None),
    "heads4_three_phases_s1": dataclasses.replace(THREE_PHASES, all_heads_copy_from=None, seed=1),
    "three_phases_all_heads_from_3250_s0": THREE_PHASES,
    "three_phases_all_heads_from_2750_s0": dataclasses.replace(THREE_PHASES, all_heads_copy_from=2750),
}

DETACHED = dataclasses.replace(THREE_PHASES, other_heads="detached", all_heads_copy_from=None)  # GPU, 2026-11-27 (2)
SHORT_PHASES = ((0, ((2,), (3,))), (750, ((1,),)), (1500, ((1,), (2, 3))))
VARIANTS |= {f"detached_three_phases_s{seed}": dataclasses.replace(DETACHED, seed=seed) for seed in range(5)}
VARIANTS |= {
    "detached_three_phases_all_heads_from_3250_s0": dataclasses.replace(DETACHED, all_heads_copy_from=3250),
    "detached_short_s0": dataclasses.replace(DETACHED, copy_only_steps=1500, silence_phases=SHORT_PHASES),
    "detached_short_s1": dataclasses.replace(DETACHED, copy_only_steps=1500, silence_phases=SHORT_PHASES, seed=1),
    "detached_mixed_copy50_s0": dataclasses.replace(DETACHED, copy_only_steps=0, copy_fraction=0.5),
    "detached_mixed_copy50_s1": dataclasses.replace(DETACHED, copy_only_steps=0, copy_fraction=0.5, seed=1),
    "detached_three_phases_copy50_s0": dataclasses.replace(DETACHED, copy_fraction=0.5),
    "detached_three_phases_lr2e-3_s0": dataclasses.replace(DETACHED, lr=2e-3),
    "detached_alt23_s0": dataclasses.replace(
        HEADS4, other_heads="detached", copy_only_steps=1250, silence_phases=((0, ((2,), (3,))),)
    ),
}

FINAL = dataclasses.replace(THREE_PHASES, silence_phases=(*THREE_PHASES.silence_phases, (3250, ((),))))  # GPU (3)
FROM_2750 = dataclasses.replace(
    THREE_PHASES, all_heads_copy_from=2750, silence_phases=(*THREE_PHASES.silence_phases, (2750, ((),)))
)
VARIANTS |= {f"final_all_heads_s{seed}": dataclasses.replace(FINAL, seed=seed) for seed in range(5)}
VARIANTS |= {
    "final_all_heads_copy50_s0": dataclasses.replace(FINAL, copy_fraction=0.5),
    "final_all_heads_copy50_s1": dataclasses.replace(FINAL, copy_fraction=0.5, seed=1),
    "final_all_heads_copyweight2_s0": dataclasses.replace(FINAL, copy_weight=2.0),
    "final_all_heads_copy_heads6_s0": dataclasses.replace(FINAL, copy_heads=6),
    "final_from_2750_s0": FROM_2750,
    "final_from_2750_copy50_s0": dataclasses.replace(FROM_2750, copy_fraction=0.5),  # the shipped recipe
    "final_from_2250_s0": dataclasses.replace(
        THREE_PHASES, all_heads_copy_from=2250, silence_phases=(*THREE_PHASES.silence_phases[:2], (2250, ((),)))
    ),
    "final_mixed_copy50_s0": dataclasses.replace(FINAL, copy_only_steps=0, copy_fraction=0.5),
    "final_short_s0": dataclasses.replace(
        FROM_2750, copy_only_steps=1500, silence_phases=(*SHORT_PHASES, (2750, ((),)))
    ),
}


def run_variant(name: str, cfg: LanguageTrainConfig, out_dir: Path) -> None:
    """Train one variant, evaluate it, write its record to `out_dir/name.json` and the model to `out_dir/name/`."""
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = out_dir / f"{name}.json"
    model, log = train_language(
        cfg, progress=False, device=device, on_checkpoint=lambda c: path.write_text(json.dumps(_summary(name, c)))
    )
    report = evaluate(model, cfg)
    record = {
        **_summary(name, log["checkpoints"]),
        "config": dataclasses.asdict(cfg),
        "device": device,
        "seconds": log["seconds"],
        "final_loss": log["final_loss"],
        **report.record(),
    }
    path.write_text(json.dumps(record, indent=1))
    save(model, cfg, log, out_dir / name, extra={"data": provenance(cfg.language), "evaluation": report.record()})


def _summary(name: str, checkpoints: list[dict]) -> dict:
    """The run's name and, per checkpoint, its step, loss and per-layer best induction and shifting scores."""
    return {
        "name": name,
        "checkpoints": [
            {
                "step": c["step"],
                "loss": c["loss"],
                "induction_by_layer": [round(max(row), 3) for row in c["induction"]],
                "shifting_by_layer": [round(max(row), 3) for row in c["shifting"]],
            }
            for c in checkpoints
        ],
    }


def main() -> None:
    """Run the chosen variants in parallel until done or until the deadline, then stop the rest."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=BASE.steps)
    parser.add_argument("--deadline", type=float, default=3600.0)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(VARIANTS)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=run_variant, args=(n, dataclasses.replace(VARIANTS[n], steps=args.steps), args.out))
        for n in names
    ]
    start = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=max(0.0, args.deadline - (time.time() - start)))
    for n, p in zip(names, procs, strict=True):
        if p.is_alive():
            p.terminate()
            print(f"{n}: stopped at the deadline")
    print(f"sweep took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
