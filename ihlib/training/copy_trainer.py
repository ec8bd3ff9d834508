"""Train the embedded copy model, "ihlib-copy": a small GPT-2 on sequences of repeated random segments.

Run `python -m ihlib.training.copy_trainer` to retrain it (seeded, CPU) into `ihlib/training/data/copy_model/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import GPT2Config, GPT2LMHeadModel

from ihlib.model.errors import IHLibError
from ihlib.model.loading import COPY_MODEL_DIR, new_model


@dataclasses.dataclass(frozen=True)
class ModelTrainConfig:
    """Architecture and optimisation settings shared by both trainers (defaults: the language model's)."""

    vocab_size: int = 512
    n_positions: int = 128
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 8
    steps: int = 4000
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.05

    def gpt2_config(self) -> GPT2Config:
        """Return the GPT-2 architecture config (no dropout, tied unembedding)."""
        return GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig(ModelTrainConfig):
    """Architecture, copy-task and optimisation settings of the embedded copy model."""

    n_layer: int = 3
    steps: int = 3000
    batch_size: int = 64
    seq_len: int = 96
    warmup: int = 100
    min_seg: int = 4
    max_seg: int = 30
    max_prefix: int = 8
    long_prefix_fraction: float = 0.5
    loss_on_repeats_only: bool = True
    position_init_scale: float = 0.03
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject settings where some sequence could hold no complete second copy of its segment."""
        if not 2 <= self.min_seg <= self.max_seg or self.max_prefix + 2 * self.max_seg > self.seq_len:
            raise IHLibError(
                f"Segments of {self.min_seg}..{self.max_seg} tokens after a prefix of up to {self.max_prefix} "
                f"do not fit twice in seq_len={self.seq_len}: need 2 <= min_seg <= max_seg and "
                "max_prefix + 2 * max_seg <= seq_len."
            )


def training_batch(cfg: TrainConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(ids, labels)`, each `(batch_size, seq_len)`: a random prefix, then a random segment repeated to the end.

    A fraction `long_prefix_fraction` of the sequences gets a prefix anywhere in `0..seq_len - 2 * seg`,
    the rest at most `max_prefix` tokens: the first copy then starts anywhere in the context, so
    previous-token heads must work at every position. `labels` is -100 (ignored by the loss) on the
    tokens that cannot be predicted from an earlier copy when `loss_on_repeats_only`; this focuses the
    gradient on copying and makes induction heads form within about 2000 steps.
    """
    b, t = cfg.batch_size, cfg.seq_len
    ids = torch.randint(0, cfg.vocab_size, (b, t), generator=generator)
    seg = torch.randint(cfg.min_seg, cfg.max_seg + 1, (b, 1), generator=generator)
    short_prefix = torch.randint(0, cfg.max_prefix + 1, (b, 1), generator=generator)
    long_prefix = (torch.rand((b, 1), generator=generator) * (t - 2 * seg + 1)).long()
    is_long = torch.rand((b, 1), generator=generator) < cfg.long_prefix_fraction
    prefix = torch.where(is_long, long_prefix, short_prefix)
    pos = torch.arange(t).unsqueeze(0)
    repeated = pos >= prefix + seg
    ids = torch.gather(ids, 1, torch.where(repeated, prefix + (pos - prefix) % seg, pos))
    labels = torch.where(repeated, ids, -100) if cfg.loss_on_repeats_only else ids
    return ids, labels


def init_sinusoidal_positions(model: GPT2LMHeadModel, scale: float) -> None:
    """Initialise the learned position table `wpe` `(n_positions, d_model)` with sin/cos waves times `scale`.

    Relative offsets are then a rotation of the position code, so previous-token heads are easy to learn;
    the table stays a trainable GPT-2 parameter.
    """
    n_pos, d_model = model.transformer.wpe.weight.shape
    pos = torch.arange(n_pos, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(-torch.arange(0, d_model, 2, dtype=torch.float32) * (torch.log(torch.tensor(1e4)) / d_model))
    table = torch.zeros(n_pos, d_model)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    with torch.no_grad():
        model.transformer.wpe.weight.copy_(scale * table)


def train(cfg: TrainConfig, progress: bool = True) -> tuple[GPT2LMHeadModel, dict]:
    """Train a model from scratch under `cfg`; return it (eval mode) and a log of losses and time."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = new_model(cfg.gpt2_config())
    if cfg.position_init_scale > 0:
        init_sinusoidal_positions(model, cfg.position_init_scale)

    def batch_loss(step: int) -> torch.Tensor:
        ids, labels = training_batch(cfg, generator)
        return model(ids, labels=labels).loss

    log = optimise(model, cfg, batch_loss, progress=progress)
    return model.eval(), log


def optimise(
    model: GPT2LMHeadModel,
    cfg: ModelTrainConfig,
    batch_loss: Callable[[int], torch.Tensor],
    *,
    progress: bool = True,
    on_checkpoint: Callable[[int, float], None] | None = None,
    checkpoint_every: int = 0,
) -> dict:
    """Run `cfg.steps` AdamW steps on `batch_loss(step)` (warm-up, cosine decay, clipping); return the loss log.

    Every `checkpoint_every` steps (and at step 0) `on_checkpoint(step, recent_loss)` runs with the model in eval mode.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    if on_checkpoint is not None:
        _checkpoint(model, on_checkpoint, 0, float("nan"))
    model.train()
    losses, start = [], time.perf_counter()
    for step in tqdm(range(cfg.steps), desc="training", disable=not progress):
        loss = batch_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_checkpoint is not None and (step + 1) % checkpoint_every == 0:
            _checkpoint(model, on_checkpoint, step + 1, sum(losses[-checkpoint_every:]) / checkpoint_every)
    log = {"seconds": time.perf_counter() - start, "final_loss": sum(losses[-50:]) / len(losses[-50:])}
    log["losses"] = losses[:: max(1, cfg.steps // 100)]
    return log


def _checkpoint(model: GPT2LMHeadModel, on_checkpoint: Callable[[int, float], None], step: int, loss: float) -> None:
    """Call `on_checkpoint(step, loss)` with the model in eval mode, then return it to training mode."""
    model.eval()
    with torch.no_grad():
        on_checkpoint(step, loss)
    model.train()


def _lr_factor(step: int, cfg: ModelTrainConfig) -> float:
    """Linear warm-up then cosine decay to 10% of the peak learning rate."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item())


def save(model: GPT2LMHeadModel, cfg: ModelTrainConfig, log: dict, out_dir: Path, *, extra: dict | None = None) -> None:
    """Write the weights (safetensors), the HF config, and the training config, log and `extra` to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    record = {
        "train_config": dataclasses.asdict(cfg),
        "log": log,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # ATen's kernels: results differ between levels
        **(extra or {}),
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> None:
    """Command line: retrain the copy model, optionally overriding steps, seed and output folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=COPY_MODEL_DIR, help="output folder")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (the shipped weights were trained with 2)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(TrainConfig(), steps=args.steps, seed=args.seed)
    model, log = train(cfg)
    save(model, cfg, log, args.out)
    print(f"trained in {log['seconds']:.0f} s, final loss {log['final_loss']:.3f}, saved to {args.out}")


if __name__ == "__main__":
    main()
