"""Per-position loss on repeated random tokens: the loss drops once the segment repeats (in-context copying).

Convention: query position `t` predicts token `t + 1`; arrays over positions have length `T - 1`
for sequences of `T` tokens. Losses are cross-entropies in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.model.loading import AnyGPT2, transformer_of, unembedding
from ihlib.model.validation import integer, seed_value


@dataclass
class PositionLoss:
    """Mean cross-entropy at each query position `(T - 1,)` with a bootstrap interval over sequences.

    `per_sequence` is `(batch, T - 1)`; `low`/`high` bound the `level` interval of the mean, resampling
    sequences. Query position `t` predicts token `t + 1`; `offset` is 1 when a BOS token comes first.
    """

    loss: np.ndarray
    low: np.ndarray
    high: np.ndarray
    per_sequence: np.ndarray
    seg_len: int
    rep: int
    offset: int
    vocab_size: int
    level: float

    @property
    def uniform_loss(self) -> float:
        """Loss of a model that spreads its prediction evenly over the vocabulary: `ln(vocab_size)`."""
        return float(np.log(self.vocab_size))

    def repeat_of_position(self) -> np.ndarray:
        """Index `0..rep-1` of the repeat that holds each predicted token `t + 1`, `(T - 1,)`."""
        predicted = np.arange(1, self.loss.size + 1) - self.offset
        return predicted // self.seg_len

    def by_repeat(self) -> np.ndarray:
        """Mean loss over the predicted tokens of each repeat, `(rep,)` (the first token is never predicted)."""
        which = self.repeat_of_position()
        return np.array([self.loss[which == r].mean() for r in range(self.rep)])

    def by_repeat_table(self, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per repeat: tokens predicted, mean loss with its bootstrap interval over sequences, ln(vocab)."""
        which = self.repeat_of_position()
        per_repeat = np.stack([self.per_sequence[:, which == r].mean(axis=1) for r in range(self.rep)], axis=1)
        low, high = bootstrap_mean_interval(per_repeat, n_boot=n_boot, level=self.level, seed=seed)
        return pd.DataFrame(
            {
                "repeat": np.arange(1, self.rep + 1),
                "tokens predicted": [int((which == r).sum()) for r in range(self.rep)],
                "mean loss (nats)": per_repeat.mean(axis=0),
                f"{self.level:.0%} interval": [f"{lo:.3f} to {hi:.3f}" for lo, hi in zip(low, high, strict=True)],
                "uniform guess ln(vocab)": self.uniform_loss,
            }
        )

    name = "position_loss"

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-position mean, its interval and the per-sequence losses."""
        return {"loss": self.loss, "low": self.low, "high": self.high, "per_sequence": self.per_sequence}

    def record(self) -> dict:
        """JSON-friendly setting, mean loss per repeat and the uniform-guess loss."""
        return {
            "seg_len": self.seg_len,
            "rep": self.rep,
            "offset": self.offset,
            "vocab_size": self.vocab_size,
            "level": self.level,
            "by_repeat": self.by_repeat().tolist(),
            "uniform_loss": self.uniform_loss,
        }


def target_log_probs(
    model: AnyGPT2, input_ids: torch.Tensor, *, chunk_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(log_p, top1)`, each `(batch, T - 1)`: log-probability of the true next token and whether it ranks first.

    One forward pass over `input_ids` `(batch, T)`, in chunks of `chunk_size` sequences; float32 on the CPU.
    """
    if input_ids.ndim != 2 or input_ids.shape[1] < 2:
        raise IHLibError(f"input_ids must be (batch, seq) with seq >= 2, got shape {tuple(input_ids.shape)}.")
    body, w_u = transformer_of(model), unembedding(model)
    log_ps, top1s = [], []
    with torch.no_grad():
        for chunk in input_ids.to(w_u.device).split(int(chunk_size)):
            logits = (body(chunk).last_hidden_state[:, :-1] @ w_u.T).float()  # (b, T-1, vocab)
            target = chunk[:, 1:]
            log_ps.append(torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1).cpu())
            top1s.append((logits.argmax(-1) == target).cpu())
    return torch.cat(log_ps), torch.cat(top1s)


def bootstrap_mean_interval(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0 of `values` `(n, ...)`: `(low, high)`, each `(...)`."""
    n_boot, seed = integer(n_boot, "n_boot", low=1), seed_value(seed)
    if not 0 < level < 1:
        raise IHLibError(f"level must lie strictly between 0 and 1, got {level}.")
    if int(n_boot) < 1:
        raise IHLibError(f"n_boot must be at least 1, got {n_boot}.")
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.shape[0], size=(int(n_boot), values.shape[0]))
    means = values[draws].mean(axis=1)  # (n_boot, ...)
    tail = (1 - level) / 2
    return np.quantile(means, tail, axis=0), np.quantile(means, 1 - tail, axis=0)


def position_loss(
    model: AnyGPT2,
    *,
    seg_len: int = 25,
    rep: int = 3,
    batch_size: int = 50,
    seed: int = 0,
    bos_token_id: int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
) -> PositionLoss:
    """Cross-entropy at every query position on `batch_size` random `seg_len`-token segments repeated `rep` times."""
    vocab = model.config.vocab_size
    ids = repeated_tokens(batch_size, seg_len, vocab, rep=rep, seed=seed, bos_token_id=bos_token_id)
    if ids.shape[1] > model.config.n_positions:
        raise IHLibError(
            f"seg_len * rep = {ids.shape[1]} tokens exceeds the model's context of {model.config.n_positions}."
        )
    log_p, _ = target_log_probs(model, ids)
    per_sequence = -log_p.double().numpy()
    low, high = bootstrap_mean_interval(per_sequence, n_boot=n_boot, level=level, seed=seed)
    return PositionLoss(
        loss=per_sequence.mean(axis=0),
        low=low,
        high=high,
        per_sequence=per_sequence,
        seg_len=int(seg_len),
        rep=int(rep),
        offset=int(bos_token_id is not None),
        vocab_size=int(vocab),
        level=float(level),
    )
