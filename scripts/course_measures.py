"""Measure the course's standard measures on both embedded models: the in-context learning score on the language's
documents (also with each layer's induction heads zero-ablated), and copying with each layer's induction heads
ablated. Writes `scripts/course_measures_results.json`; run from the repository root with `PYTHONPATH=.`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ihlib.heads.scoring import head_scores
from ihlib.heads.selection import counting_heads
from ihlib.model.loading import load_model
from ihlib.report.model_facts import training_record
from ihlib.tools.ablation import ablated, copying_under_ablations, per_layer_ablations
from ihlib.tools.in_context import icl_score
from ihlib.training.synthetic_language import LanguageConfig, SyntheticLanguage

DOCUMENT_SEED = 2026  # not the trainer's seeds (0 for training, 12345 for its held-out evaluation)
N_DOCUMENTS = 200


def documents() -> np.ndarray:
    """`(N_DOCUMENTS, 128)` documents of the language the embedded language model learned (its training.json)."""
    language = training_record("ihlib-language")["train_config"]["language"]
    return (
        SyntheticLanguage(LanguageConfig(**language)).sample(N_DOCUMENTS, 128, np.random.default_rng(DOCUMENT_SEED)).ids
    )


def measure(name: str, ids: np.ndarray) -> dict:
    """ICL score intact and per layer of induction heads zero-ablated; copying under per-layer ablations."""
    model = load_model(name, device="cpu")
    heads = counting_heads(head_scores(model), "induction")
    result = {"induction_heads": heads, "icl": {"intact": icl_score(model, ids).record()}}
    for condition in per_layer_ablations(heads)[1:]:
        with ablated(model, condition.heads, kind="zero"):
            result["icl"][condition.name] = icl_score(model, ids).record()
    copying = copying_under_ablations(model, per_layer_ablations(heads) + per_layer_ablations(heads, kind="mean")[1:])
    result["copying"] = copying.record()
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    ids = documents()
    results = {
        "documents": {"n": N_DOCUMENTS, "tokens": 128, "seed": DOCUMENT_SEED, "language": "ihlib-language's"},
        **{name: measure(name, ids) for name in ("ihlib-language", "ihlib-copy")},
    }
    Path("scripts/course_measures_results.json").write_text(json.dumps(results, indent=1) + "\n")
    for name in ("ihlib-language", "ihlib-copy"):
        print(name, "IHs", results[name]["induction_heads"])
        for key, value in results[name]["icl"].items():
            print(
                f"  ICL {key}: score {value['score'][0]:+.3f} [{value['score'][1]:+.3f}, {value['score'][2]:+.3f}]"
                f" early {value['early_loss'][0]:.3f} late {value['late_loss'][0]:.3f}"
            )
        for row in results[name]["copying"]["conditions"]:
            print(
                f"  copying error {row['name']}: {row['error'][0]:.3f} [{row['error'][1]:.3f}, {row['error'][2]:.3f}]"
            )
