"""Train the embedded language model: a small GPT-2 on a synthetic language, with copy-task rows mixed in.

Run `python -m ihlib.training.language_trainer` to retrain it (seeded, CPU) into `ihlib/training/data/language_model/`.
The first `copy_only_steps` batches are the copy task alone (a random segment repeated after a random prefix,
loss on the repeated tokens only, as for the copy model); after that each batch holds `copy_fraction` rows of it
and documents of `synthetic_language` (loss on every token). On the copy rows only heads 0..`copy_heads`-1 of each
layer run (until `all_heads_copy_from`), and `silence_phases` switches whole layers off there by step, so that
induction forms in two layers while the other heads learn only the language. Head scores are recorded at
checkpoints, so the phase changes are on file. Other curricula are tried in `scripts/sweep_language.py`.

`--recipe adaptive` trains the measured curriculum instead (`ADAPTIVE`, `ihlib.training.curriculum.MEASURED_PHASES`):
its phases end when the heads meant to become induction heads reach an induction score (or at a cap), not at fixed
steps; `scripts/robustness_language.py` runs it over seeds and perturbed arithmetic. Every run ends by printing the
targets it missed (`LanguageModelReport.missed_targets`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from ihlib.core.copying import copy_accuracy
from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import HeadScores, head_scores
from ihlib.model.errors import IHLibError
from ihlib.model.loading import new_model
from ihlib.tools.ablation import ablated, head_output_hooks
from ihlib.training.copy_trainer import (
    ModelTrainConfig,
    TrainConfig,
    init_sinusoidal_positions,
    optimise,
    save,
    training_batch,
)
from ihlib.training.curriculum import MEASURED_PHASES, CopyRows, Phase, PhaseClock, phase_from_record
from ihlib.training.synthetic_language import WORD, LanguageConfig, SyntheticLanguage, provenance, word_entropies

LANGUAGE_MODEL_DIR = Path(__file__).parent / "data" / "language_model"


@dataclasses.dataclass(frozen=True)
class LanguageTrainConfig(ModelTrainConfig):
    """Architecture and optimisation (`ModelTrainConfig`'s defaults), data mix and curriculum of the language model."""

    copy_fraction: float = 0.5
    copy_weight: float = 1.0  # weight of the copy rows' loss in mixed batches (copy-only batches: 1)
    copy_only_steps: int = 2250
    min_seg: int = 4
    max_seg: int = 30
    max_prefix: int = 8
    long_prefix_fraction: float = 0.5
    position_init_scale: float = 0.03
    checkpoint_every: int = 250
    copy_heads: int | None = 4  # heads 0..copy_heads-1 of each layer learn from the copy rows; None: all heads
    other_heads: Literal["zeroed", "detached"] = "zeroed"  # the heads past copy_heads on the copy rows
    all_heads_copy_from: int | None = 2750  # from this step on every head sees the copy rows (None: never)
    silence_phases: tuple[tuple[int, tuple[tuple[int, ...], ...]], ...] = (
        (0, ((2,), (3,))),  # copy rows alternately without layer 2 or layer 3: induction forms in layer 1
        (750, ((1,),)),  # then without layer 1: induction must form again, in layer 2
        (2250, ((1,), (2, 3))),  # then alternately without layer 1 or layers 2-3: both induction layers stay needed
        (2750, ((),)),  # then every layer on, with every head: the heads 4-7 meet random tokens and copying is repaired
    )  # (first step, cycle of layer sets): copy rows of step s silence the set s % len(cycle) of the latest phase
    seed: int = 0
    language: LanguageConfig = dataclasses.field(default_factory=LanguageConfig)
    phases: tuple[Phase, ...] = ()  # when given, the copy rows follow these measured phases (ihlib.training.curriculum)
    # and copy_only_steps, all_heads_copy_from and silence_phases are unused
    phase_check_every: int = 50  # steps between the head scorings that decide whether a phase has ended
    init_nudge: float = 0.0  # std of seeded Gaussian noise added to every initial weight (robustness runs: 1e-6)

    def __post_init__(self) -> None:
        """Reject a language whose vocabulary differs from the model's, and mixes outside [0, 1]."""
        if self.language.vocab_size != self.vocab_size:
            raise IHLibError(f"language.vocab_size={self.language.vocab_size} must equal vocab_size={self.vocab_size}.")
        if not 0.0 <= self.copy_fraction <= 1.0:
            raise IHLibError(f"copy_fraction={self.copy_fraction} must lie in [0, 1].")
        if self.copy_heads is not None and not 1 <= self.copy_heads <= self.n_head:
            raise IHLibError(f"copy_heads={self.copy_heads} must lie in 1..n_head={self.n_head}.")
        if self.other_heads not in ("zeroed", "detached"):
            raise IHLibError(f"other_heads={self.other_heads!r} must be 'zeroed' or 'detached'.")
        phase_layers = [layer for _, cycle in self.silence_phases for layers in cycle for layer in layers]
        if any(not 0 <= layer < self.n_layer for layer in phase_layers) or any(
            not cycle for _, cycle in self.silence_phases
        ):
            raise IHLibError(f"silence_phases={self.silence_phases}: give cycles of layers in 0..{self.n_layer - 1}.")
        for phase in self.phases:
            phase.check(n_layer=self.n_layer)
        if self.phases and self.checkpoint_every % self.phase_check_every:
            raise IHLibError(
                f"checkpoint_every={self.checkpoint_every} must be a multiple of "
                f"phase_check_every={self.phase_check_every}."
            )
        self.copy_task(1)

    @property
    def n_copy_rows(self) -> int:
        """Rows per batch that hold the copy task (after the copy-only steps)."""
        return round(self.copy_fraction * self.batch_size)

    def copy_task(self, rows: int) -> TrainConfig:
        """The copy-task batch settings for `rows` rows (loss on repeated tokens only)."""
        return TrainConfig(
            vocab_size=self.vocab_size,
            n_positions=self.n_positions,
            batch_size=rows,
            seq_len=self.seq_len,
            min_seg=self.min_seg,
            max_seg=self.max_seg,
            max_prefix=self.max_prefix,
            long_prefix_fraction=self.long_prefix_fraction,
        )

    def copy_rows(self, step: int, phase: Phase | None = None) -> CopyRows:
        """The copy rows of `step`: under `phase` when given, else under the fixed-step schedule of this config."""
        if phase is not None:
            n_rows = round(phase.copy_fraction * self.batch_size)
            return self._rows(n_rows, phase.layers_off(step), all_heads=phase.all_heads)
        n_rows = self.batch_size if step < self.copy_only_steps else self.n_copy_rows
        late = self.all_heads_copy_from is not None and step >= self.all_heads_copy_from
        return self._rows(n_rows, self._silenced_layers(step), all_heads=late)

    def _rows(self, n_rows: int, layers_off: tuple[int, ...], *, all_heads: bool) -> CopyRows:
        """Copy rows with every head of `layers_off` zeroed and the heads past `copy_heads` (unless `all_heads`)
        zeroed or detached as `other_heads` says; the loss weight is `copy_weight` in mixed batches, else 1."""
        first = self.n_head if self.copy_heads is None or all_heads else self.copy_heads
        past = {(layer, head) for layer in range(self.n_layer) for head in range(first, self.n_head)}
        off = {(layer, head) for layer in layers_off for head in range(self.n_head)}
        zeroed = past if self.other_heads == "zeroed" else set()
        detached = past - off if self.other_heads == "detached" else set()
        weight = self.copy_weight if n_rows < self.batch_size else 1.0
        return CopyRows(n_rows=n_rows, silenced=sorted(zeroed | off), detached=sorted(detached), weight=weight)

    def _silenced_layers(self, step: int) -> tuple[int, ...]:
        """The layers that the latest started phase of `silence_phases` switches off at `step`."""
        started = [cycle for start, cycle in self.silence_phases if start <= step]
        return started[-1][step % len(started[-1])] if started else ()

    def copy_row_silenced_heads(self, step: int) -> list[tuple[int, int]]:
        """`(layer, head)` pairs zeroed on the copy rows of `step` (fixed schedule): the silenced layers' heads, and
        with `other_heads="zeroed"` the heads past `copy_heads`."""
        return self.copy_rows(step).silenced

    def copy_row_detached_heads(self, step: int) -> list[tuple[int, int]]:
        """`(layer, head)` pairs that run on the copy rows of `step` (fixed schedule) but get no gradient from them
        (`other_heads="detached"`: the heads past `copy_heads` outside the silenced layers)."""
        return self.copy_rows(step).detached


ADAPTIVE = LanguageTrainConfig(  # phases end on measured induction (the fixed-step fields set to no effect);
    steps=5000,  # a position table of sine waves 3x larger than the shipped recipe's, to ease the previous-token step
    position_init_scale=0.1,
    copy_only_steps=0,
    all_heads_copy_from=None,
    silence_phases=(),
    phases=MEASURED_PHASES,
)
RECIPES = {"shipped": LanguageTrainConfig(), "adaptive": ADAPTIVE}


def config_from_record(record: dict) -> LanguageTrainConfig:
    """Rebuild the training configuration from `training.json`'s `"train_config"` mapping."""
    fields = dict(record)
    fields["silence_phases"] = tuple(
        (first, tuple(tuple(layers) for layers in cycle)) for first, cycle in fields.get("silence_phases", ())
    )
    fields["phases"] = tuple(phase_from_record(phase) for phase in fields.get("phases", ()))
    return LanguageTrainConfig(**{**fields, "language": LanguageConfig(**fields["language"])})


def mixed_batch_loss(
    model: GPT2LMHeadModel,
    cfg: LanguageTrainConfig,
    language: SyntheticLanguage,
    step: int,
    generator: torch.Generator,
    rng: np.random.Generator,
    *,
    phase: Phase | None = None,
) -> torch.Tensor:
    """Loss of one batch: mean next-token loss on the documents plus the copy rows' loss, weighted as
    `cfg.copy_rows(step, phase)` says (a batch of copy rows alone is not weighted).

    The copy rows run with `rows.silenced` zeroed and `rows.detached` detached, so only the other heads learn to copy.
    """
    device = model.lm_head.weight.device
    rows = cfg.copy_rows(step, phase)
    loss = torch.zeros((), device=device)
    if rows.n_rows > 0:
        ids, labels = training_batch(cfg.copy_task(rows.n_rows), generator)
        with ablated(model, rows.silenced), gradient_blocked(model, rows.detached):
            logits = model(ids.to(device)).logits[:, :-1]
        loss = loss + rows.weight * F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten().to(device))
    if rows.n_rows < cfg.batch_size:
        docs = torch.from_numpy(language.sample(cfg.batch_size - rows.n_rows, cfg.seq_len, rng).ids).to(device)
        logits = model(docs).logits[:, :-1]
        loss = loss + F.cross_entropy(logits.flatten(0, 1), docs[:, 1:].flatten())
    return loss


@contextmanager
def gradient_blocked(model: GPT2LMHeadModel, heads: Sequence[tuple[int, int]]) -> Iterator[GPT2LMHeadModel]:
    """Within the block, the outputs of `heads` `[(layer, head), ...]` pass forward unchanged but send no gradient
    back (their slices of `c_proj`'s input `(batch, seq, n_head*d_head)` are detached); hooks go, also on error."""
    with head_output_hooks(model, heads, lambda _, heads_here: _detaching_hook(heads_here, model.config.n_head)):
        yield model


def _detaching_hook(heads: list[int], n_head: int):
    """Pre-hook replacing the slices of `heads` in `c_proj`'s input by their detached values."""
    mask = torch.zeros(n_head, 1, dtype=torch.bool)
    mask[heads] = True

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        z = args[0].unflatten(-1, (n_head, -1))  # (batch, seq, n_head, d_head)
        return (torch.where(mask.to(z.device), z.detach(), z).flatten(-2), *args[1:])

    return hook


def train_language(
    cfg: LanguageTrainConfig,
    *,
    progress: bool = True,
    device: str = "cpu",
    on_checkpoint: Callable[[list[dict]], None] | None = None,
) -> tuple[GPT2LMHeadModel, dict]:
    """Train from scratch under `cfg`; return the model (eval mode, on CPU) and a log with head-score checkpoints
    (and, with `cfg.phases`, when each phase started and why).

    `on_checkpoint(checkpoints)` sees the checkpoint records so far after each one (e.g. to save progress). With
    phases the heads are scored every `phase_check_every` steps and a checkpoint's loss is the mean over those steps.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    language = SyntheticLanguage(cfg.language)
    model = new_model(cfg.gpt2_config())
    if cfg.position_init_scale > 0:
        init_sinusoidal_positions(model, cfg.position_init_scale)
    if cfg.init_nudge > 0:
        nudge_weights(model, cfg.init_nudge, seed=cfg.seed)
    model.to(device)
    clock = PhaseClock(cfg.phases, copy_heads=cfg.copy_heads) if cfg.phases else None
    checkpoints: list[dict] = []

    def record(step: int, loss: float) -> None:
        scores = head_scores(model, batch_size=20, seg_len=min(25, cfg.n_positions // 3))
        if clock is not None:
            clock.update(step, scores.induction)
        if step % cfg.checkpoint_every == 0:
            phase = {"phase": clock.current.name} if clock is not None else {}
            kinds = {"induction": scores.induction.tolist(), "shifting": scores.shifting.tolist()}
            checkpoints.append({"step": step, "loss": loss, **phase, **kinds})
            if on_checkpoint is not None:
                on_checkpoint(checkpoints)

    def batch_loss(step: int) -> torch.Tensor:
        phase = clock.at(step) if clock is not None else None
        return mixed_batch_loss(model, cfg, language, step, generator, rng, phase=phase)

    log = optimise(
        model,
        cfg,
        batch_loss,
        progress=progress,
        on_checkpoint=record,
        checkpoint_every=cfg.phase_check_every if clock is not None else cfg.checkpoint_every,
    )
    phases = {"phases": clock.history} if clock is not None else {}
    return model.cpu().eval(), {**log, **phases, "checkpoints": checkpoints}


def nudge_weights(model: GPT2LMHeadModel, std: float, *, seed: int) -> None:
    """Add Gaussian noise of `std` (from a generator seeded with `seed`) to every parameter, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(std * torch.randn(param.shape, generator=generator))


@dataclasses.dataclass(frozen=True)
class LanguageModelReport:
    """What the trained model does: held-out word loss beside the data's entropies, copying, head scores."""

    word_loss: float
    unigram_entropy: float
    bigram_entropy: float
    copy_accuracy: float
    induction: np.ndarray
    shifting: np.ndarray

    def record(self) -> dict:
        """JSON-friendly numbers, with the per-layer head kinds of `ihlib.heads.head_table.head_table`."""
        table = head_table(HeadScores(self.induction, self.shifting))
        return {
            "word_loss": self.word_loss,
            "unigram_entropy": self.unigram_entropy,
            "bigram_entropy": self.bigram_entropy,
            "copy_accuracy": self.copy_accuracy,
            "induction": self.induction.round(4).tolist(),
            "shifting": self.shifting.round(4).tolist(),
            "head_kinds": [{"layer": layer, **counts} for layer, counts in enumerate(table.role_counts())],
            "missed_targets": self.missed_targets(),
        }

    def missed_targets(self) -> list[str]:
        """The targets of a retrain (issue 25) that this model misses, in words; empty when it meets every one."""
        table = head_table(HeadScores(self.induction, self.shifting))
        ih_layers, shift_layers = np.nonzero(table.induction)[0], np.nonzero(table.shifting)[0]
        checks = {
            f"induction heads in at least 2 layers (found in layers {ih_layers.tolist()})": ih_layers.size >= 2,
            "every layer with induction heads holds at least 2 heads of neither kind": bool(
                (table.neither[ih_layers] >= 2).all()
            ),
            "shifting heads in a layer before some induction heads": bool(
                ih_layers.size and shift_layers.size and shift_layers.min() < ih_layers.max()
            ),
            f"copying top-1 >= 0.9 (got {self.copy_accuracy:.3f})": self.copy_accuracy >= 0.9,
            f"word loss below the bigram entropy ({self.word_loss:.3f} against {self.bigram_entropy:.3f})": (
                self.word_loss < self.bigram_entropy
            ),
        }
        return [target for target, met in checks.items() if not met]


def evaluate(
    model: GPT2LMHeadModel, cfg: LanguageTrainConfig, *, n_docs: int = 200, seed: int = 12345
) -> LanguageModelReport:
    """Held-out loss on ordinary word tokens, the data's entropies (from 20x more documents), copying and scores."""
    rng = np.random.default_rng(seed)
    language = SyntheticLanguage(cfg.language)
    held_out = language.sample(n_docs, cfg.seq_len, rng)
    entropies = word_entropies(language.sample(20 * n_docs, cfg.seq_len, rng))
    ids = torch.from_numpy(held_out.ids)
    with torch.no_grad():
        logits = model(ids).logits[:, :-1].float()
    token_loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    is_word = torch.from_numpy(held_out.kinds[:, 1:] == WORD).flatten()
    seg = min(25, cfg.n_positions // 2)
    scores = head_scores(model, seg_len=min(25, cfg.n_positions // 3))
    return LanguageModelReport(
        word_loss=float(token_loss[is_word].mean()),
        unigram_entropy=entropies.unigram,
        bigram_entropy=entropies.bigram,
        copy_accuracy=copy_accuracy(model, seg_len=seg, batch_size=100, seed=seed),
        induction=scores.induction,
        shifting=scores.shifting,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: retrain the language model, optionally overriding steps, seed, device and output folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=LANGUAGE_MODEL_DIR, help="output folder")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=LanguageTrainConfig.seed)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped weights used 1)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="shipped", help="named training configuration")
    parser.add_argument("--nudge", type=float, default=None, help="std of noise added to the initial weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    nudge = recipe.init_nudge if args.nudge is None else args.nudge
    steps = recipe.steps if args.steps is None else args.steps
    cfg = dataclasses.replace(recipe, steps=steps, seed=args.seed, init_nudge=nudge)
    model, log = train_language(cfg)
    report = evaluate(model, cfg)
    save(model, cfg, log, args.out, extra={"data": provenance(cfg.language), "evaluation": report.record()})
    print(f"trained in {log['seconds']:.0f} s, final loss {log['final_loss']:.3f}, saved to {args.out}")
    missed = report.missed_targets()
    print("meets every target" if not missed else "MISSED TARGETS: " + "; ".join(missed))


if __name__ == "__main__":
    main()
