"""ihlib: helpers for the executable book on induction heads and their common subspace in GPT-2.

The package is layered; a module imports only from its own layer and those below (`tests/architecture`):
`model` < `heads` < `core` < `claims`, `tools` < `report`, `training` < `book` (the runner). The seed notebook's
one-call functions live in `ihlib.report.seed_notebook` and are re-exported here, so that `from ihlib import ...`
replaces `from analysis_utils import ...`; they draw figures, so they load (with matplotlib) on first use:
`import ihlib` alone does not import matplotlib.
"""

import importlib

from ihlib.claims.diagonal import QKOVMatching, QKOVZScores, qkov_blocks, qkov_zscores
from ihlib.claims.projection import ProjectionResult, common_subspace, project
from ihlib.claims.shuffling import ShuffleResult, ShuffleSweep, shuffle, shuffle_sweep
from ihlib.claims.subspaces import SubspaceMatching, match_subspaces, subspace_match_score
from ihlib.core.circuits import diagonal_zscore, embedding_basis
from ihlib.core.copying import CopyingSettings, pred_probs
from ihlib.core.edits import exchange_edit, projection_edit
from ihlib.core.factored import (
    HeadSubspaces,
    ThinSVD,
    head_subspaces,
    ov_svd,
    qk_svd,
    right_singular_subspace,
    stacked_qk_svd,
    thin_svd_product,
)
from ihlib.core.stats import mean_ci
from ihlib.heads.scoring import HeadScores, attention_patterns, head_scores, scores_by_position
from ihlib.heads.selection import count_threshold, counting_heads, head_role, top_heads
from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import BookError, EditError, HeadError, IHLibError, ModelLoadError, ParameterError
from ihlib.model.head_ids import check_heads, head_label, head_labels, rank_heads
from ihlib.model.loading import DEFAULT_MODEL_NAME, load_model, model_label, new_model, transformer_of, unembedding
from ihlib.model.weights import head_biases, head_weights, ov, qk
from ihlib.report.saving import create_folder, save_result, write_rankings

__all__ = [
    "BookError",
    "DEFAULT_MODEL_NAME",
    "CopyingSettings",
    "EditError",
    "HeadError",
    "HeadScores",
    "HeadSubspaces",
    "IHLibError",
    "ModelLoadError",
    "ProjectionResult",
    "ParameterError",
    "QKOVMatching",
    "QKOVZScores",
    "ShuffleResult",
    "ShuffleSweep",
    "SubspaceMatching",
    "ThinSVD",
    "attention_patterns",
    "check_heads",
    "common_subspace",
    "copy_positions",
    "count_threshold",
    "counting_heads",
    "create_folder",
    "diagonal_zscore",
    "embedding_basis",
    "exchange_edit",
    "head_biases",
    "head_label",
    "head_labels",
    "head_role",
    "head_scores",
    "head_subspaces",
    "head_weights",
    "load_model",
    "match_subspaces",
    "mean_ci",
    "model_label",
    "new_model",
    "ov",
    "ov_svd",
    "pred_probs",
    "project",
    "project_exp",
    "projection_edit",
    "qk",
    "qk_svd",
    "qkov_blocks",
    "qkov_matching",
    "qkov_matching_summary",
    "qkov_zscores",
    "rank_heads",
    "repeated_tokens",
    "right_singular_subspace",
    "save_result",
    "scores_by_position",
    "shuffle",
    "shuffle_exp",
    "shuffle_sweep",
    "stacked_qk_svd",
    "subspace_match_score",
    "subspace_matching",
    "thin_svd_product",
    "top_heads",
    "transformer_of",
    "unembedding",
    "write_rankings",
]

SEED_FUNCTIONS = ("project_exp", "qkov_matching", "qkov_matching_summary", "shuffle_exp", "subspace_matching")


def __getattr__(name: str) -> object:
    """Load the seed's one-call functions from `ihlib.report.seed_notebook` on first use."""
    if name in SEED_FUNCTIONS:
        return getattr(importlib.import_module("ihlib.report.seed_notebook"), name)
    raise AttributeError(f"module 'ihlib' has no attribute {name!r}")
