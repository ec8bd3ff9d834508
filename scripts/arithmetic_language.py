"""Which settings change the language model's training arithmetic: a fingerprint of the first steps of a retrain.

Usage: [ATEN_CPU_CAPABILITY=avx2] [MKL_CBWR=AVX2] python scripts/arithmetic_language.py LABEL [--threads N]
Prints one JSON line: the label, the CPU (`lscpu`), ATen's CPU capability, the losses at steps 0 and 40 of the
shipped recipe (compare with the shipped `training.json` log, which keeps every 40th loss) and a SHA-256 of every
weight after 3 steps. Two settings follow the same trajectory exactly when their fingerprints are equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os

import torch

from ihlib.training import language_trainer
from ihlib.training.language_trainer import LanguageTrainConfig, train_language


class _Stop(Exception):
    """Raised from the batch loss to end training after the steps we need."""


def first_losses(cfg: LanguageTrainConfig, steps: int) -> tuple[list[float], torch.nn.Module]:
    """Losses of the first `steps` steps of `cfg` (its learning-rate schedule unchanged) and the model after them."""
    losses: list[float] = []
    real = language_trainer.mixed_batch_loss
    holder: dict[str, torch.nn.Module] = {}

    def counting(model, *args, **kwargs):
        holder["model"] = model
        if len(losses) == steps:
            raise _Stop
        loss = real(model, *args, **kwargs)
        losses.append(loss.item())
        return loss

    language_trainer.mixed_batch_loss = counting
    try:
        train_language(cfg, progress=False)
    except _Stop:
        pass
    finally:
        language_trainer.mixed_batch_loss = real
    return losses, holder["model"]


def weights_hash(model: torch.nn.Module) -> str:
    """First 16 hex digits of the SHA-256 of every tensor of the state dict, in order."""
    data = b"".join(tensor.detach().cpu().numpy().tobytes() for tensor in model.state_dict().values())
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> None:
    """Fingerprint the shipped recipe's first steps under the current environment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("label")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(LanguageTrainConfig(), checkpoint_every=100_000)
    _, after_3 = first_losses(cfg, 3)
    three = weights_hash(after_3)
    losses, _ = first_losses(cfg, 41)
    env = {key: os.environ.get(key) for key in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS")}
    record = {"label": args.label, "threads": args.threads, "env": env}
    record |= {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkl": torch.backends.mkl.is_available()}
    record |= {"loss_step_0": losses[0], "loss_step_40": losses[40], "weights_after_3_steps": three}
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
