"""What a model is: its training record (`training.json`), what it was trained on, and where its heads are.

The facts come from the model's folder and from a scoring call, never from prose, so that a page built on
them stays true when a model is retrained. Hub models (e.g. "gpt2") have no folder here and no record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ihlib.core.copying import copy_accuracy
from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import HeadScores, head_scores, uniform_head_scores
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import head_label
from ihlib.model.loading import EMBEDDED_MODELS, embedded_dir, load_model
from ihlib.report.seed_gpt2 import SEED_GPT2_TOP, SEED_SETTING
from ihlib.tools.dynamics import TrainingDynamics, training_dynamics

RECORD = "training.json"
SEED_SOURCE = "printed by the seed (one sequence, 5 tokens x 3), not recomputed"


def model_folder(name: str | Path | None) -> Path | None:
    """Return the local folder of `name` (an embedded model's name, None for the default, or a directory), else None."""
    folder = embedded_dir(name)
    if folder is None and name is not None and Path(name).is_dir():
        folder = Path(name)
    return folder if folder is not None and folder.is_dir() else None


def training_record(name: str | Path | None) -> dict | None:
    """Return the `training.json` of `name`'s folder as a dict, or None when there is no folder or no record."""
    folder = model_folder(name)
    if folder is None or not (folder / RECORD).is_file():
        return None
    return json.loads((folder / RECORD).read_text())


def training_dynamics_of(name: str | Path | None) -> tuple[TrainingDynamics | None, str]:
    """Return the checkpoints' training dynamics of `name`, or None, with a sentence saying where they come from."""
    label = "the default embedded model" if name is None else str(name)
    record = training_record(name)
    if record is None:
        return None, f"{label}: no training record here ({RECORD}), so no training dynamics to show."
    try:
        dynamics = training_dynamics(record, source=f"{label}'s {RECORD}")
    except IHLibError:
        return None, f"{label}: its {RECORD} records no checkpoints (no head scores during training)."
    return dynamics, f"{label}: {dynamics.step.size} checkpoints from step {dynamics.step[0]} to {dynamics.step[-1]}."


def trained_on(record: dict) -> str:
    """Say in a few words what a training record's `train_config` trained on (copy task, or language and copies)."""
    config = record.get("train_config") or {}
    copies = f"random segments of {config.get('min_seg', '?')}-{config.get('max_seg', '?')} tokens repeated"
    if "language" not in config:
        only = ", loss on the repeats only" if config.get("loss_on_repeats_only") else ""
        return f"{copies}{only}"
    share = config.get("copy_fraction", 0.0)
    return f"a synthetic language (Markov words, recurring names, copied spans), plus {share:.0%} rows of {copies}"


def curriculum_note(record: dict) -> str:
    """Say how a training record's curriculum shaped where heads could learn to copy ("" without a curriculum)."""
    config = record.get("train_config") or {}
    phases = config.get("silence_phases")
    if not phases:
        return ""
    copy_heads, every = config.get("copy_heads"), config.get("all_heads_copy_from")
    heads = (
        f"only heads 0-{copy_heads - 1} of each layer learned from the copy rows until step {every}, and "
        if (copy_heads and every)
        else ""
    )
    switched = "; ".join(
        f"from step {step}: "
        + (" or ".join("layer(s) " + ", ".join(map(str, group)) for group in groups if group) or "none")
        for step, groups in phases
    )
    return (
        f"its head layout was shaped by its training curriculum: {heads}layers were switched off on the copy rows "
        f"in turn ({switched}), which decided where induction heads could form; a model that grew them from its "
        "data alone may place them differently, as GPT-2 does"
    )


def roles_by_layer(scores: HeadScores) -> pd.DataFrame:
    """Count the heads of each layer per role (`head_table`), one row per layer; the heads listed."""
    return pd.DataFrame(head_table(scores).rows())


@dataclass
class ModelFacts:
    """One embedded model: its size, what it was trained on, its head scores and its copying accuracy."""

    name: str
    n_layer: int
    n_head: int
    d_model: int
    vocab_size: int
    context: int
    trained_on: str
    steps: int | None
    train_minutes: float | None
    scores: HeadScores
    seed_setting_scores: HeadScores
    copy_accuracy: float
    evaluation: dict
    copy_seed: int = 0  # the seed of the 100 random segments `copy_accuracy` was measured on

    def row(self) -> dict[str, object]:
        """The facts as one table row; the best heads with their scores."""
        best_ih, best_shift = self.scores.IH_list[0], self.scores.Shifting_list[0]
        return {
            "model": self.name,
            "layers x heads": f"{self.n_layer} x {self.n_head}",
            "d_model": self.d_model,
            "vocabulary": self.vocab_size,
            "context": self.context,
            "trained on": self.trained_on,
            "steps": self.steps,
            "CPU minutes": None if self.train_minutes is None else f"{self.train_minutes:.0f}",
            "top IH": f"{head_label(*best_ih)} ({self.scores.induction[tuple(best_ih)]:.2f})",
            "top shifting head": f"{head_label(*best_shift)} ({self.scores.shifting[tuple(best_shift)]:.2f})",
            f"top-1 copying (100 segments, seed {self.copy_seed})": round(self.copy_accuracy, 3),
            "word loss (unigram / bigram entropy)": self.language_loss_text(),
        }

    def language_loss_text(self) -> str:
        """Held-out word loss beside the data's unigram and bigram entropies (nats), from the training record."""
        if "word_loss" not in self.evaluation:
            return "no language"
        values = (self.evaluation[key] for key in ("word_loss", "unigram_entropy", "bigram_entropy"))
        return "{:.2f} ({:.2f} / {:.2f})".format(*values)


def model_facts(
    name: str, *, batch_size: int = 50, seg_len: int = 25, rep: int = 3, seed: int = 0, device: str = "cpu"
) -> ModelFacts:
    """Load the model `name` and gather its facts: config, `training.json`, head scores (also in the seed's setting)
    and copying accuracy."""
    model = load_model(name, device=device)
    config = model.config
    record = training_record(name) or {}
    log = record.get("log") or {}
    seconds = log.get("seconds")
    return ModelFacts(
        name=name,
        n_layer=config.n_layer,
        n_head=config.n_head,
        d_model=config.n_embd,
        vocab_size=config.vocab_size,
        context=config.n_positions,
        trained_on=trained_on(record) if record else "(no training record)",
        steps=(record.get("train_config") or {}).get("steps"),
        train_minutes=None if seconds is None else float(seconds) / 60,
        scores=head_scores(model, batch_size=batch_size, seg_len=seg_len, rep=rep, seed=seed),
        seed_setting_scores=head_scores(model, batch_size=batch_size, seed=seed, **SEED_SETTING),
        copy_accuracy=copy_accuracy(model, seed=seed),
        evaluation=record.get("evaluation") or {},
        copy_seed=seed,
    )


def facts_table(facts: list[ModelFacts]) -> pd.DataFrame:
    """One row per fact and one column per model (`ModelFacts.row`), so that a page can show it at its width."""
    rows = pd.DataFrame([fact.row() for fact in facts]).set_index("model").T
    return rows.rename_axis(index="", columns=None).reset_index()


def roles_table(facts: list[ModelFacts]) -> pd.DataFrame:
    """Heads per layer and role for every model (`roles_by_layer`), the model's name first."""
    frames = [roles_by_layer(fact.scores).assign(model=fact.name) for fact in facts]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["model", *[column for column in frame.columns if column != "model"]]]


def embedded_models() -> tuple[list[str], list[str]]:
    """Return `(present, missing)`: the embedded models' names whose folder holds weights, and the others."""
    present = [name for name, folder in EMBEDDED_MODELS.items() if any(folder.glob("*.safetensors"))]
    return present, [name for name in EMBEDDED_MODELS if name not in present]


def top_heads_text(scores: HeadScores, kind: str, n: int = 3) -> str:
    """The `n` best heads of `kind` with their scores, e.g. "L5H1 0.995, L5H5 0.990"."""
    values = getattr(scores, kind)
    ranked = scores.IH_list if kind == "induction" else scores.Shifting_list
    return ", ".join(f"{head_label(layer, head)} {values[layer, head]:.3f}" for layer, head in ranked[:n])


def seed_comparison(scores_by_model: dict[str, HeadScores], *, n: int = 3) -> pd.DataFrame:
    """The seed's printed GPT-2 top heads (quoted, not recomputed) beside the top heads of each scored model."""
    seed_uniform = uniform_head_scores(SEED_SETTING["seg_len"], SEED_SETTING["rep"])
    rows = [
        {
            "model": "GPT-2 small",
            "source": SEED_SOURCE,
            "top induction heads": _printed(SEED_GPT2_TOP["induction"][:n]),
            "top shifting heads": _printed(SEED_GPT2_TOP["shifting"][:n]),
            "uniform head (ind. / shift.)": f"{seed_uniform['induction']:.3f} / {seed_uniform['shifting']:.3f}",
        }
    ]
    for name, scores in scores_by_model.items():
        setting = scores.setting
        uniform = scores.uniform
        rows.append(
            {
                "model": name,
                "source": f"computed here: {setting.seg_len}-token segments x {setting.rep}",
                "top induction heads": top_heads_text(scores, "induction", n),
                "top shifting heads": top_heads_text(scores, "shifting", n),
                "uniform head (ind. / shift.)": f"{uniform['induction']:.3f} / {uniform['shifting']:.3f}",
            }
        )
    return pd.DataFrame(rows)


def _printed(heads: list[tuple[tuple[int, int], float]]) -> str:
    """Format the seed's printed `((layer, head), score)` pairs as `top_heads_text` does."""
    return ", ".join(f"{head_label(layer, head)} {score:.3f}" for (layer, head), score in heads)
