"""The in-context learning score (Olsson et al. 2022): the loss late in the context minus the loss early in it.

Document-agnostic: the caller passes the documents `input_ids (batch, T)` (the book passes the embedded language's,
`ihlib.training.synthetic_language`). Query position `t` predicts token `t + 1`; `early` and `late` are half-open
ranges `(start, stop)` of query positions, averaged per document first. The score is negative when the model
predicts better with more context; the interval resamples documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.stats import Interval
from ihlib.model.errors import ParameterError
from ihlib.model.loading import AnyGPT2
from ihlib.tools.ablation import Ablation, ablated
from ihlib.tools.losses import bootstrap_mean_interval, target_log_probs

EARLY = (10, 20)  # query positions whose loss counts as "early": about a tenth into a 128-token context ...
LATE = (100, 127)  # ... and "late": the last fifth (Olsson et al. compare token 50 with token 500 of 512)


@dataclass(frozen=True)
class ICLScore:
    """Mean loss (nats) at the `early` and `late` query positions and their difference `score = late - early`,
    each with a 95% bootstrap interval over the `n_documents`; `loss_by_position (T - 1,)` the mean per position."""

    score: Interval
    early_loss: Interval
    late_loss: Interval
    early: tuple[int, int]
    late: tuple[int, int]
    n_documents: int
    loss_by_position: np.ndarray
    name = "icl_score"

    def record(self) -> dict:
        """JSON-friendly: the three intervals as `[mean, low, high]`, the position ranges and the documents."""
        as_list = {key: [value.mean, value.low, value.high] for key, value in self._intervals().items()}
        return {**as_list, "early": list(self.early), "late": list(self.late), "n_documents": self.n_documents}

    def arrays(self) -> dict[str, np.ndarray]:
        """The mean loss at each query position `(T - 1,)`."""
        return {"loss_by_position": self.loss_by_position}

    def _intervals(self) -> dict[str, Interval]:
        """The score and the two losses, by name."""
        return {"score": self.score, "early_loss": self.early_loss, "late_loss": self.late_loss}


def check_positions(span: tuple[int, int], name: str, n_positions: int) -> tuple[int, int]:
    """Return `span` as ints when `0 <= start < stop <= n_positions`, else raise ParameterError."""
    start, stop = (int(value) for value in span)
    if not 0 <= start < stop <= n_positions:
        raise ParameterError(
            f"{name}={tuple(span)}: give query positions (start, stop) with 0 <= start < stop <= {n_positions} "
            f"(the documents hold {n_positions + 1} tokens, so {n_positions} positions predict one)."
        )
    return start, stop


def icl_score(
    model: AnyGPT2,
    input_ids: torch.Tensor | np.ndarray,
    *,
    early: tuple[int, int] = EARLY,
    late: tuple[int, int] = LATE,
    n_boot: int = 1000,
    seed: int = 0,
) -> ICLScore:
    """In-context learning score of `model` on the documents `input_ids (batch, T)`: late loss minus early loss."""
    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    if ids.ndim != 2 or ids.shape[0] < 2:
        raise ParameterError(f"input_ids must be (batch, T) with at least 2 documents, got {tuple(ids.shape)}.")
    if ids.shape[1] > model.config.n_positions:
        raise ParameterError(f"Documents of {ids.shape[1]} tokens exceed the context of {model.config.n_positions}.")
    early = check_positions(early, "early", ids.shape[1] - 1)
    late = check_positions(late, "late", ids.shape[1] - 1)
    loss = -target_log_probs(model, ids)[0].double().numpy()  # (batch, T - 1)
    per_document = {
        "early": loss[:, slice(*early)].mean(axis=1),
        "late": loss[:, slice(*late)].mean(axis=1),
    }
    per_document["score"] = per_document["late"] - per_document["early"]
    intervals = {}
    for key, values in per_document.items():
        low, high = bootstrap_mean_interval(values, n_boot=n_boot, seed=seed)
        intervals[key] = Interval(float(values.mean()), float(low), float(high))
    return ICLScore(
        score=intervals["score"],
        early_loss=intervals["early"],
        late_loss=intervals["late"],
        early=early,
        late=late,
        n_documents=int(ids.shape[0]),
        loss_by_position=loss.mean(axis=0),
    )


def icl_under_ablations(
    model: AnyGPT2,
    input_ids: torch.Tensor | np.ndarray,
    conditions: Sequence[Ablation],
    *,
    seed: int = 0,
    **spans: tuple[int, int],
) -> dict[str, ICLScore]:
    """`icl_score` of `input_ids (batch, T)` under each zero-ablation condition (no heads: the intact model), by
    condition name (`spans`: `early`, `late` as in `icl_score`); the model is restored after each. Mean ablation
    is refused (its means depend on the input)."""
    if any(condition.kind != "zero" for condition in conditions):
        raise ParameterError("icl_under_ablations takes zero ablations only: build them with kind='zero'.")
    scores = {}
    for condition in conditions:
        if not condition.heads:
            scores[condition.name] = icl_score(model, input_ids, seed=seed, **spans)
            continue
        with ablated(model, condition.heads, kind="zero"):
            scores[condition.name] = icl_score(model, input_ids, seed=seed, **spans)
    return scores
