"""Training dynamics: loss and per-head induction and shifting scores over the checkpoints the trainer recorded.

The trainer writes `training.json` in the model folder with
`"checkpoints": [{"step": int, "loss": float, "induction": [[...n_head] x n_layer], "shifting": [[...]]}, ...]`
at the top level or inside `"log"` (as `ihlib.training.language_trainer` saves them)
(scores as `ihlib.heads.scoring.head_scores` computes them) and `"log": {"losses": [...], "steps": [...]}`.
Without `log.steps`, the logged losses are taken every `max(1, train_config.steps // 100)` steps, as
`ihlib.training.copy_trainer` records them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import HEAD_KINDS, HeadKind, check_kind


@dataclass
class TrainingDynamics:
    """Scores over training: `step`, `loss` `(n_ckpt,)`; `induction`, `shifting` `(n_ckpt, n_layer, n_head)`.

    `log_step`, `log_loss` `(n_logged,)` are the finer training-loss curve of `log.losses`.
    """

    step: np.ndarray
    loss: np.ndarray
    induction: np.ndarray
    shifting: np.ndarray
    log_step: np.ndarray
    log_loss: np.ndarray

    def scores(self, kind: HeadKind) -> np.ndarray:
        """The `(n_checkpoints, n_layer, n_head)` scores of `kind` ("induction" or "shifting")."""
        check_kind(kind)
        return self.induction if kind == "induction" else self.shifting

    def best_per_layer(self, kind: HeadKind) -> np.ndarray:
        """Best head's score of `kind` in each layer at each checkpoint, `(n_checkpoints, n_layer)`."""
        return self.scores(kind).max(axis=2)

    def phase_change_step(self, kind: HeadKind = "induction", *, fraction: float = 0.5) -> int:
        """First checkpoint step at which the best head's score has risen `fraction` of the way from start to peak."""
        if not 0 < fraction <= 1:
            raise IHLibError(f"fraction must lie in (0, 1], got {fraction}.")
        best = self.scores(kind).max(axis=(1, 2))
        bar = best[0] + fraction * (best.max() - best[0])
        return int(self.step[np.argmax(best >= bar)])


def phase_change_table(dynamics: TrainingDynamics, *, fraction: float = 0.5) -> pd.DataFrame:
    """Per score kind: the best head's score at the first and last checkpoint, the phase-change step, its loss."""
    rows = []
    for kind in HEAD_KINDS:
        best = dynamics.scores(kind).max(axis=(1, 2))
        step = dynamics.phase_change_step(kind, fraction=fraction)
        rows.append(
            {
                "score": kind,
                "best head, first checkpoint": best[0],
                "best head, last checkpoint": best[-1],
                f"step past {fraction:.0%} of the rise": step,
                "loss at that step": dynamics.loss[int(np.flatnonzero(dynamics.step == step)[0])],
            }
        )
    return pd.DataFrame(rows)


def read_training_dynamics(path: str | Path) -> TrainingDynamics:
    """Read a model folder's `training.json` (or that file itself) into a `TrainingDynamics`."""
    path = Path(path)
    file = path / "training.json" if path.is_dir() else path
    if not file.is_file():
        raise IHLibError(f"No training record at {file}: expected a model folder holding training.json.")
    return training_dynamics(json.loads(file.read_text()), source=str(file))


def training_dynamics(record: dict, *, source: str = "the record") -> TrainingDynamics:
    """Parse a `training.json` record (a dict) into a `TrainingDynamics`; checkpoints sorted by step."""
    checkpoints = record.get("checkpoints") or (record.get("log") or {}).get("checkpoints")
    if not checkpoints:
        raise IHLibError(
            f"{source} has no 'checkpoints': this model was trained without recording head scores during training."
        )
    for i, checkpoint in enumerate(checkpoints):
        missing = [key for key in ("step", "loss", *HEAD_KINDS) if key not in checkpoint]
        if missing:
            raise IHLibError(f"{source}: checkpoints[{i}] lacks {missing}; each needs step, loss, induction, shifting.")
    checkpoints = sorted(checkpoints, key=lambda checkpoint: checkpoint["step"])
    scores = {kind: _stacked_scores(checkpoints, kind, source) for kind in HEAD_KINDS}
    if scores["induction"].shape != scores["shifting"].shape:
        raise IHLibError(
            f"{source}: induction scores {scores['induction'].shape[1:]} and shifting scores "
            f"{scores['shifting'].shape[1:]} differ in shape (n_layer, n_head)."
        )
    log_step, log_loss = _logged_losses(record)
    return TrainingDynamics(
        step=np.array([int(c["step"]) for c in checkpoints]),
        loss=np.array([float(c["loss"]) for c in checkpoints]),
        induction=scores["induction"],
        shifting=scores["shifting"],
        log_step=log_step,
        log_loss=log_loss,
    )


def _stacked_scores(checkpoints: list[dict], kind: str, source: str) -> np.ndarray:
    """Stack one kind of score over checkpoints into `(n_checkpoints, n_layer, n_head)`, or raise on ragged shapes."""
    arrays = [np.asarray(checkpoint[kind], dtype=np.float64) for checkpoint in checkpoints]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise IHLibError(
            f"{source}: '{kind}' must be [[... n_head] x n_layer] at every checkpoint, got shapes {shapes}."
        )
    return np.stack(arrays)


def _logged_losses(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """Return `(steps, losses)` of `log.losses`; steps from `log.steps` or the trainer's stride; empty if absent."""
    log = record.get("log") or {}
    losses = np.asarray(log.get("losses", []), dtype=np.float64)
    if "steps" in log:
        steps = np.asarray(log["steps"], dtype=np.int64)
        if steps.shape != losses.shape:
            raise IHLibError(f"log.steps has {steps.size} entries but log.losses has {losses.size}.")
        return steps, losses
    total = int((record.get("train_config") or {}).get("steps", losses.size))
    return np.arange(losses.size) * max(1, total // 100), losses
