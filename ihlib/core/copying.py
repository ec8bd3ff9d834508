"""The copying test shared by claims 3 and 4: repeated random tokens, P(correct next token) and top-1 error.

Every experiment repeats `n_exp` times. Repetition `r` draws its own batch of repeated random tokens
(seeded by `seed` and `r`) and scores every condition on that same batch (paired comparison). Uncertainty:
mean across repetitions of the per-repetition mean (over samples and positions) with a 95% Student
t-interval (`stats.mean_ci`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ihlib.core.stats import mean_ci
from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.model.loading import AnyGPT2, transformer_of, unembedding
from ihlib.model.validation import integer, seed_value

COUNT_FIELDS = {"seg_len": 2, "rep": 2, "batch_size": 1, "burn_in": 0, "n_exp": 1}  # each field's least value


@dataclass(frozen=True)
class CopyingSettings:
    """Settings of the copying test; they travel whole, from the chapter's parameters to the saved record.

    `vocab_size`: token ids are drawn from `0..vocab_size-1` (None: the model's whole vocabulary); `burn_in`:
    predictable positions skipped at the start of the second segment; `bos_token_id`: a BOS token first, or None.
    """

    seg_len: int = 20
    rep: int = 3
    batch_size: int = 50
    burn_in: int = 4
    n_exp: int = 10
    seed: int = 0
    vocab_size: int | None = None
    bos_token_id: int | None = None

    def resolved(self, model: AnyGPT2) -> CopyingSettings:
        """Validate the settings against `model`; return them with `vocab_size` filled in."""
        vocab = model.config.vocab_size if self.vocab_size is None else self.vocab_size
        vocab = integer(vocab, "vocab_size", low=2, high=model.config.vocab_size)
        counts = {name: integer(getattr(self, name), name, low=low) for name, low in COUNT_FIELDS.items()}
        typed = replace(self, **counts, seed=seed_value(self.seed))
        length = int(self.bos_token_id is not None) + typed.rep * typed.seg_len
        if length > model.config.n_positions:
            raise IHLibError(
                f"rep * seg_len (+ BOS) = {length} tokens exceeds the model's context of {model.config.n_positions}."
            )
        if self.bos_token_id is not None:
            integer(self.bos_token_id, "bos_token_id", low=0, high=model.config.vocab_size - 1)
        settings = replace(typed, vocab_size=int(vocab))
        settings.positions()
        return settings

    def positions(self) -> np.ndarray:
        """Return the scored query positions (see `data.copy_positions`)."""
        return copy_positions(self.seg_len, self.rep, self.burn_in, bos=self.bos_token_id is not None)

    def batches(self) -> list[torch.Tensor]:
        """The `n_exp` `(batch_size, [1 +] rep * seg_len)` of repeated tokens, batch r seeded by (seed, r)."""
        seeds = [int(np.random.SeedSequence([self.seed, r]).generate_state(1)[0]) for r in range(self.n_exp)]
        return [
            repeated_tokens(self.batch_size, self.seg_len, self.vocab_size, self.rep, s, self.bos_token_id)
            for s in seeds
        ]

    def record(self) -> dict:
        """JSON-friendly settings as every experiment record holds them, with the scored positions."""
        values = asdict(self)
        keys = ("n_exp", "batch_size", "seg_len", "rep", "burn_in", "vocab_size", "seed")
        return {key: values[key] for key in keys} | {"positions": self.positions().tolist()}


def pred_probs(
    model: AnyGPT2,
    input_ids: torch.Tensor,
    positions: np.ndarray | list[int] | None = None,
    chunk_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Return `(probs, errs)`, each `(batch, n_positions)`: P(correct next token) and top-1 error per query position.

    Query position `t` predicts token `t + 1`; `positions=None` scores every `t < seq - 1`.
    Works for `GPT2Model` (tied `wte` unembedding) and `GPT2LMHeadModel`; samples run in chunks.
    """
    check_input_ids(model, input_ids)
    chunk_size = integer(chunk_size, "chunk_size", low=1)
    seq = input_ids.shape[1]
    positions = np.arange(seq - 1) if positions is None else np.asarray(positions)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= seq - 1:
        raise IHLibError(f"positions must lie in 0..{seq - 2} for sequences of length {seq}.")
    body = transformer_of(model)
    w_u = unembedding(model)
    device = w_u.device
    pos = torch.as_tensor(positions, device=device)
    probs, errs = [], []
    with torch.no_grad():
        for chunk in input_ids.to(device).split(chunk_size):
            hidden = body(chunk).last_hidden_state[:, pos]  # (b, n_pos, d_model)
            logits = (hidden @ w_u.T).float()
            target = chunk[:, pos + 1]
            log_p = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            probs.append(log_p.exp().cpu())
            errs.append((logits.argmax(-1) != target).float().cpu())
    return torch.cat(probs).numpy(), torch.cat(errs).numpy()


def copy_accuracy(model: AnyGPT2, *, seg_len: int = 25, batch_size: int = 100, seed: int = 0) -> float:
    """Top-1 accuracy on the second repeat of `batch_size` random `seg_len`-token segments (every position)."""
    seg_len = integer(seg_len, "seg_len", low=2)
    ids = repeated_tokens(batch_size, seg_len, model.config.vocab_size, rep=2, seed=seed)
    _, errs = pred_probs(model, ids, copy_positions(seg_len, rep=2, burn_in=0))
    return float(1.0 - errs.mean())


def check_input_ids(model: AnyGPT2, input_ids: torch.Tensor) -> None:
    """Raise unless `input_ids` is `(batch, seq)` of token ids of `model`'s vocabulary within its context."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
        shape = tuple(getattr(input_ids, "shape", ()))
        raise IHLibError(f"input_ids must be an integer tensor (batch, seq), got shape {shape}.")
    vocab, context = model.config.vocab_size, model.config.n_positions
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
        low, high = int(input_ids.min()), int(input_ids.max())
        raise IHLibError(f"input_ids holds ids {low}..{high}: the model's vocabulary is 0..{vocab - 1}.")
    if input_ids.shape[1] > context:
        raise IHLibError(f"input_ids has {input_ids.shape[1]} positions: the model's context is {context}.")


def per_repetition(values: np.ndarray) -> np.ndarray:
    """Average `(..., n_exp, batch, n_positions)` over samples and positions: `(..., n_exp)`."""
    return values.mean(axis=(-2, -1))


def condition_summary(probs: dict, errs: dict, reference: np.ndarray) -> dict:
    """Return per condition the mean and 95% interval (across repetitions) of error, probability and error change.

    `reference`: per-repetition error of the unedited model `(..., n_exp)`; the change is paired per repetition.
    """
    summary = {}
    for condition in probs:
        err = per_repetition(errs[condition])
        summary[condition] = {
            "err": mean_ci(err),
            "prob": mean_ci(per_repetition(probs[condition])),
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
