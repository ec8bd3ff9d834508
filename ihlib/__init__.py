"""ihlib: helpers for the executable book on induction heads and their common subspace in GPT-2.

Public names keep the seed notebook's names and call shapes (`from ihlib import ...` replaces
`from analysis_utils import ...`).
"""

from ihlib.data import copy_positions, repeated_tokens
from ihlib.edits import exchange_edit, projection_edit
from ihlib.errors import BookError, EditError, HeadError, IHLibError, ModelLoadError, ParameterError
from ihlib.experiments import (
    InterventionResult,
    common_subspace,
    mean_ci,
    project_exp,
    shuffle_exp,
    shuffle_sweep,
    summary_rows,
)
from ihlib.factored import ThinSVD, ov_svd, qk_svd, right_singular_subspace, thin_svd_product
from ihlib.matching import (
    HeadSubspaces,
    QKOVMatching,
    QKOVZScores,
    SubspaceMatching,
    diagonal_zscore,
    embedding_basis,
    head_subspaces,
    match_subspaces,
    qkov_matching,
    qkov_matching_summary,
    qkov_zscores,
    subspace_match_score,
    subspace_matching,
)
from ihlib.metrics import pred_probs
from ihlib.models import DEFAULT_MODEL_NAME, load_model, model_label, new_model, transformer_of, unembedding
from ihlib.plots import create_folder, head_label, head_labels
from ihlib.scoring import (
    HeadScores,
    attention_patterns,
    head_scores,
    rank_heads,
    scores_by_position,
    write_rankings,
)
from ihlib.weights import check_head, check_heads, head_biases, head_weights, ov, qk

__all__ = [
    "BookError",
    "DEFAULT_MODEL_NAME",
    "EditError",
    "HeadError",
    "HeadScores",
    "HeadSubspaces",
    "IHLibError",
    "InterventionResult",
    "ModelLoadError",
    "ParameterError",
    "QKOVMatching",
    "QKOVZScores",
    "SubspaceMatching",
    "ThinSVD",
    "attention_patterns",
    "check_head",
    "check_heads",
    "common_subspace",
    "copy_positions",
    "create_folder",
    "diagonal_zscore",
    "embedding_basis",
    "exchange_edit",
    "head_biases",
    "head_label",
    "head_labels",
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
    "project_exp",
    "projection_edit",
    "qk",
    "qk_svd",
    "qkov_matching",
    "qkov_matching_summary",
    "qkov_zscores",
    "rank_heads",
    "scores_by_position",
    "repeated_tokens",
    "right_singular_subspace",
    "shuffle_exp",
    "shuffle_sweep",
    "subspace_match_score",
    "subspace_matching",
    "summary_rows",
    "thin_svd_product",
    "transformer_of",
    "unembedding",
    "write_rankings",
]
