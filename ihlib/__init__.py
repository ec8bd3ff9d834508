"""ihlib: helpers for the executable book on induction heads and their common subspace in GPT-2.

Data flows `models` -> `weights` / `scoring` -> `heads` (which heads count) -> the claims (`diagonal`,
`subspaces`, `shuffling`, `projection`, over `factored`, `copying`, `edits`, `stats`) -> `results` (saving),
`plots_*`, `tables`, `prose` / `verdicts` -> the book. The seed notebook's one-call functions live in
`ihlib.seed` and are re-exported here, so that `from ihlib import ...` replaces `from analysis_utils import ...`;
they draw figures, so they load (with matplotlib) on first use: `import ihlib` alone does not import matplotlib.
"""

import importlib

from ihlib.copying import CopyingSettings, pred_probs
from ihlib.data import copy_positions, repeated_tokens
from ihlib.diagonal import QKOVMatching, QKOVZScores, diagonal_zscore, embedding_basis, qkov_blocks, qkov_zscores
from ihlib.edits import exchange_edit, projection_edit
from ihlib.errors import BookError, EditError, HeadError, IHLibError, ModelLoadError, ParameterError
from ihlib.factored import (
    HeadSubspaces,
    ThinSVD,
    head_subspaces,
    ov_svd,
    qk_svd,
    right_singular_subspace,
    stacked_qk_svd,
    thin_svd_product,
)
from ihlib.heads import (
    check_heads,
    count_threshold,
    counting_heads,
    head_label,
    head_labels,
    head_role,
    rank_heads,
    top_heads,
)
from ihlib.models import DEFAULT_MODEL_NAME, load_model, model_label, new_model, transformer_of, unembedding
from ihlib.projection import ProjectionResult, common_subspace, project
from ihlib.results import create_folder, save_result, write_rankings
from ihlib.scoring import HeadScores, attention_patterns, head_scores, scores_by_position
from ihlib.shuffling import ShuffleResult, ShuffleSweep, shuffle, shuffle_sweep
from ihlib.stats import mean_ci
from ihlib.subspaces import SubspaceMatching, match_subspaces, subspace_match_score
from ihlib.weights import head_biases, head_weights, ov, qk

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
    """Load the seed's one-call functions from `ihlib.seed` on first use."""
    if name in SEED_FUNCTIONS:
        return getattr(importlib.import_module("ihlib.seed"), name)
    raise AttributeError(f"module 'ihlib' has no attribute {name!r}")
