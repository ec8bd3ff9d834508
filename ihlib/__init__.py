"""ihlib: helpers for the executable book on induction heads and their common subspace in GPT-2.

Public names keep the seed notebook's names and call shapes (`from ihlib import ...` replaces
`from analysis_utils import ...`).
"""

from ihlib.data import copy_positions, repeated_tokens
from ihlib.errors import IHLibError, ModelLoadError
from ihlib.metrics import pred_probs
from ihlib.models import DEFAULT_MODEL_NAME, load_model, model_label, new_model, transformer_of, unembedding
from ihlib.plots import create_folder, head_label, head_labels
from ihlib.scoring import HeadScores, attention_patterns, head_scores, rank_heads, write_rankings
from ihlib.weights import check_head, check_heads, head_biases, head_weights, ov, qk
