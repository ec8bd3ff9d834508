"""Path patching runs on the copying batch: the receivers' induction scores and copying per condition, per sequence.

A condition removes routes (`ihlib.tools.path_patching.Route`) from chosen inputs of the receiver heads only; the
unedited forward comes first and records the per-position batch means the mean ablations use. Cost: one batched
forward per condition, plus the unedited one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.stats import Interval, mean_ci
from ihlib.heads.scoring import position_scores_from_attention, renormalise_without_first, uniform_head_scores
from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import HeadError, ParameterError
from ihlib.model.head_ids import head_label
from ihlib.model.loading import AnyGPT2, unembedding
from ihlib.tools.path_patching import (
    AblationKind,
    Pair,
    PatchedForward,
    PathCondition,
    Readers,
    check_patching,
    run_forward,
)


@dataclass(frozen=True)
class PatchSettings:
    """The copying batch: `batch_size` random `seg_len`-token segments repeated `rep` times, scored after `burn_in`
    tokens of the second segment; routes replaced by their batch mean ("mean") or 0 ("zero")."""

    seg_len: int = 20
    rep: int = 3
    batch_size: int = 50
    burn_in: int = 4
    seed: int = 0
    kind: AblationKind = "mean"
    bos_token_id: int | None = None

    def batch(self, model: AnyGPT2) -> torch.Tensor:
        """The `(batch_size, [1 +] rep * seg_len)` token ids, or raise when they exceed the model's context."""
        ids = repeated_tokens(
            self.batch_size, self.seg_len, model.config.vocab_size, self.rep, self.seed, self.bos_token_id
        )
        if ids.shape[1] > model.config.n_positions:
            raise ParameterError(
                f"rep * seg_len = {ids.shape[1]} tokens exceeds the model's context of {model.config.n_positions}: "
                "choose a shorter seg_len or fewer repetitions."
            )
        return ids

    def positions(self) -> np.ndarray:
        """The scored query positions (`ihlib.model.batches.copy_positions`)."""
        return copy_positions(self.seg_len, self.rep, self.burn_in, bos=self.bos_token_id is not None)


@dataclass(frozen=True)
class PathPatchingResult:
    """Receivers' induction scores and copying per condition, per sequence: `induction (n_conditions, n_receivers,
    batch)`, `error` and `prob (n_conditions, batch)` (top-1 error, P(correct next token) at the scored positions).

    Condition 0 removes nothing. `uniform_induction` is the score of a head that attends uniformly; `forwards`
    the batched forwards the run took.
    """

    conditions: tuple[PathCondition, ...]
    receivers: tuple[Pair, ...]
    inputs: tuple[str, ...]
    induction: np.ndarray
    error: np.ndarray
    prob: np.ndarray
    uniform_induction: float
    vocab_size: int
    settings: PatchSettings
    forwards: int
    name = "path_patching"

    @property
    def names(self) -> list[str]:
        """One name per condition."""
        return [condition.name for condition in self.conditions]

    @property
    def chance_error(self) -> float:
        """Top-1 error of uniform guessing, `1 - 1 / vocab_size`."""
        return 1.0 - 1.0 / self.vocab_size

    def induction_interval(self, condition: int, receiver: int) -> Interval:
        """Mean induction score of receiver `receiver` under `condition`, with a 95% t-interval over sequences."""
        return Interval.of(mean_ci(self.induction[condition, receiver]))

    def error_interval(self, condition: int) -> Interval:
        """Mean top-1 copy error under `condition`, with a 95% t-interval over sequences."""
        return Interval.of(mean_ci(self.error[condition]))

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-sequence induction `(n_conditions, n_receivers, batch)`, error and P(correct) `(n_conditions, batch)`."""
        return {"induction": self.induction, "error": self.error, "prob": self.prob}

    def record(self) -> dict:
        """JSON-friendly conditions with each receiver's induction and the copy error (mean, low, high)."""
        rows = [
            {
                "name": condition.name,
                "routes": [route.name for route in condition.routes],
                "induction": {
                    head_label(*pair): list(vars(self.induction_interval(i, j)).values())
                    for j, pair in enumerate(self.receivers)
                },
                "error": list(vars(self.error_interval(i)).values()),
            }
            for i, condition in enumerate(self.conditions)
        ]
        settings = vars(self.settings) | {"inputs": list(self.inputs), "forwards": self.forwards}
        return {"conditions": rows, "uniform_induction": self.uniform_induction, **settings}


def path_patching(
    model: AnyGPT2,
    conditions: Sequence[PathCondition],
    receivers: Sequence[Sequence[int]],
    *,
    inputs: Sequence[str] = ("k",),
    settings: PatchSettings = PatchSettings(),
) -> PathPatchingResult:
    """Remove each condition's routes from the `inputs` of the `receivers` `[(layer, head), ...]` (all at once) and
    measure their induction scores and copying on the copying batch: `1 + len(conditions)` batched forwards.

    The unedited forward comes first (condition 0, "nothing"); it records the per-position batch means of every
    route of every condition, which the mean ablations then use.
    """
    pairs = tuple((int(layer), int(head)) for layer, head in receivers)
    if not pairs:
        raise HeadError("receivers is empty: name at least one [layer, head] whose inputs the routes are removed from.")
    readers = Readers(heads=pairs, inputs=tuple(inputs))
    ids = settings.batch(model)
    for condition in conditions:
        check_patching(model, condition.routes, readers, settings.kind)
    everything = [PathCondition(), *conditions]
    all_routes = list(dict.fromkeys(route for condition in everything for route in condition.routes))
    clean = run_forward(model, ids, all_routes, Readers(), settings.kind, None)
    measured = [_measure(model, clean, ids, pairs, settings)]
    for condition in conditions:
        run = run_forward(model, ids, condition.routes, readers, settings.kind, clean.means)
        measured.append(_measure(model, run, ids, pairs, settings))
    induction, error, prob = (np.stack(values) for values in zip(*measured, strict=True))
    offset = int(settings.bos_token_id is not None)
    uniform = uniform_head_scores(settings.seg_len, settings.rep, bos=bool(offset))["induction"]
    return PathPatchingResult(
        tuple(everything), pairs, tuple(inputs), induction, error, prob, uniform,
        int(model.config.vocab_size), settings, forwards=len(everything),
    )  # fmt: skip


def _measure(
    model: AnyGPT2, run: PatchedForward, ids: torch.Tensor, receivers: tuple[Pair, ...], settings: PatchSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sequence induction `(n_receivers, batch)`, top-1 error and P(correct) `(batch,)` of one forward."""
    positions = torch.as_tensor(settings.positions())
    offset = int(settings.bos_token_id is not None)
    attention = torch.stack([run.attention[layer, :, head] for layer, head in receivers]).float().cpu()
    scores = position_scores_from_attention(
        renormalise_without_first(attention), settings.seg_len, settings.rep, offset
    )
    induction = np.nanmean(scores["induction"], axis=-1)
    w_u = unembedding(model)
    with torch.no_grad():
        logits = (run.hidden[:, positions.to(w_u.device)] @ w_u.T).float()
    target = ids[:, positions + 1].to(logits.device)
    log_p = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    error = (logits.argmax(-1) != target).double().mean(1).cpu().numpy()
    return induction, error, log_p.exp().double().mean(1).cpu().numpy()
