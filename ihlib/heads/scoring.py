"""Induction and shifting (previous-token) scores for every head, from attention on repeated random tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import transformers

from ihlib.heads import score_cache
from ihlib.heads.score_cache import cache_folder, cached_arrays, code_digest, entry_key
from ihlib.model import batches
from ihlib.model.batches import repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import HEAD_KINDS, check_heads, rank_heads
from ihlib.model.loading import AnyGPT2, model_label, transformer_of
from ihlib.model.validation import integer, seed_value

SCORING_CODE = "|".join(
    [code_digest(__file__, batches.__file__, score_cache.__file__), torch.__version__, transformers.__version__]
)  # the version of the code behind cached scores: these files' bytes, torch's and transformers' versions


@dataclass(frozen=True)
class ScoreSetting:
    """The repeated-token sequences scores are measured on: segment length, repetitions, a BOS token first or not."""

    seg_len: int = 25
    rep: int = 3
    bos: bool = False


@dataclass
class HeadScores:
    """Per-head scores `(n_layer, n_head)`, the rankings derived from them (best first), and their setting."""

    induction: np.ndarray
    shifting: np.ndarray
    setting: ScoreSetting = ScoreSetting()

    @property
    def IH_list(self) -> list[list[int]]:
        """Heads as `[layer, head]`, most induction-like first."""
        return rank_heads(self.induction)

    @property
    def Shifting_list(self) -> list[list[int]]:
        """Heads as `[layer, head]`, most previous-token-like first."""
        return rank_heads(self.shifting)

    @property
    def uniform(self) -> dict[str, float]:
        """Scores of a head attending uniformly to every earlier token in the same setting (`uniform_head_scores`)."""
        return uniform_head_scores(self.setting.seg_len, self.setting.rep, self.setting.bos)

    name = "head_scores"

    def record(self) -> dict:
        """JSON-friendly scores, rankings, the uniform-attention baseline and the setting."""
        return {
            "induction": self.induction.tolist(),
            "shifting": self.shifting.tolist(),
            "IH_list": self.IH_list,
            "Shifting_list": self.Shifting_list,
            "uniform": self.uniform,
            "setting": asdict(self.setting),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The `(n_layer, n_head)` score arrays."""
        return {"induction": self.induction, "shifting": self.shifting}


@dataclass
class PositionScores:
    """Induction and shifting score of every head at every query position, `(n_layer, n_head, T)`; NaN if undefined."""

    induction: np.ndarray
    shifting: np.ndarray
    setting: ScoreSetting = ScoreSetting()

    def head_scores(self) -> HeadScores:
        """Head scores `(n_layer, n_head)`: the means over query positions."""
        means = (np.nanmean(getattr(self, kind), axis=-1) for kind in HEAD_KINDS)
        return HeadScores(*means, self.setting)

    def arrays(self) -> dict[str, np.ndarray]:
        """The `(n_layer, n_head, T)` score arrays."""
        return {kind: getattr(self, kind) for kind in HEAD_KINDS}


def attention_patterns(model: AnyGPT2, input_ids: torch.Tensor) -> torch.Tensor:
    """Return attention weights `(n_layer, batch, n_head, seq, seq)` of `model` on `input_ids`."""
    body = transformer_of(model)
    device = next(body.parameters()).device
    with torch.no_grad():
        out = body(input_ids.to(device), output_attentions=True)
    if out.attentions is None or out.attentions[0] is None:
        raise IHLibError("The model returned no attention weights: load it with attn_implementation='eager'.")
    return torch.stack(out.attentions).float().cpu()


def check_fits_context(model: AnyGPT2, input_ids: torch.Tensor) -> None:
    """Raise `IHLibError` when the sequences `(batch, T)` are longer than the model's context."""
    if input_ids.shape[1] > model.config.n_positions:
        raise IHLibError(
            f"seg_len * rep = {input_ids.shape[1]} tokens exceeds the model's context of {model.config.n_positions}."
        )


def renormalise_without_first(attn: torch.Tensor) -> torch.Tensor:
    """Zero attention to and from position 0 (the attention sink) and renormalise rows; shape kept."""
    a = attn.clone()
    a[..., 0, :] = 0
    a[..., :, 0] = 0
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / total.clamp_min(1e-30), a)


def induction_mask(seg_len: int, rep: int, offset: int = 0) -> torch.Tensor:
    """Return `(T, T)` 0/1 mask: query `i` in segment r >= 1 marks the keys after each earlier occurrence."""
    t = offset + rep * seg_len
    mask = torch.zeros(t, t)
    for i in range(offset + seg_len, t):
        for k in range(1, (i - offset) // seg_len + 1):
            j = i - k * seg_len + 1
            if j >= 1:
                mask[i, j] = 1.0
    return mask


def head_scores(
    model: AnyGPT2,
    *,
    batch_size: int = 50,
    seg_len: int = 25,
    rep: int = 3,
    seed: int = 0,
    bos_token_id: int | None = None,
) -> HeadScores:
    """Score every head on `batch_size` repeated random segments; returns `(n_layer, n_head)` arrays.

    Induction: renormalised attention summed over the tokens after earlier occurrences, averaged
    over the queries of segments 2..rep. Shifting: attention at offset -1, averaged over queries 2..T-1.
    Both are the means over query positions of `scores_by_position`.
    """
    options = dict(batch_size=batch_size, seg_len=seg_len, rep=rep, seed=seed, bos_token_id=bos_token_id)
    return scores_by_position(model, **options).head_scores()


def scores_by_position(
    model: AnyGPT2,
    *,
    batch_size: int = 50,
    seg_len: int = 25,
    rep: int = 3,
    seed: int = 0,
    bos_token_id: int | None = None,
) -> PositionScores:
    """Induction and shifting score of every head at every query position, `(n_layer, n_head, T)` each.

    NaN where a score is undefined: induction before the second segment, shifting at positions 0 and 1.
    Where `IHLIB_SCORE_CACHE` names a folder (the book runner sets it), the scores of a model with the same
    weights and options are computed once and then read from there (`ihlib.heads.score_cache`).
    """
    batch_size = integer(batch_size, "batch_size", low=1)
    options = dict(batch_size=batch_size, **sequence_setting(seg_len, rep, seed), bos_token_id=bos_token_id)
    folder = cache_folder()
    if folder is None:
        return _scores_by_position(model, **options)
    key = entry_key(model, "scores_by_position", options, code=SCORING_CODE)
    arrays = cached_arrays(
        folder, key, lambda: _scores_by_position(model, **options).arrays(), names=("induction", "shifting")
    )
    return PositionScores(arrays["induction"], arrays["shifting"], ScoreSetting(seg_len, rep, bos_token_id is not None))


def sequence_setting(seg_len: object, rep: object, seed: object) -> dict[str, int]:
    """`seg_len` (at least 2), `rep` (at least 2) and `seed` (at least 0) checked as whole numbers (2.0 counts as 2),
    or ParameterError naming the one at fault."""
    return {"seg_len": integer(seg_len, "seg_len", low=2), "rep": integer(rep, "rep", low=2), "seed": seed_value(seed)}


def _scores_by_position(
    model: AnyGPT2, *, batch_size: int, seg_len: int, rep: int, seed: int, bos_token_id: int | None
) -> PositionScores:
    """Compute `scores_by_position` without the cache."""
    vocab = model.config.vocab_size
    ids = repeated_tokens(batch_size, seg_len, vocab, rep=rep, seed=seed, bos_token_id=bos_token_id)
    check_fits_context(model, ids)
    attn = renormalise_without_first(attention_patterns(model, ids)).mean(dim=1)  # (L, H, T, T)
    setting = ScoreSetting(seg_len, rep, bos_token_id is not None)
    return PositionScores(
        **position_scores_from_attention(attn, seg_len, rep, offset=int(setting.bos)), setting=setting
    )


def position_scores_from_attention(attn: torch.Tensor, seg_len: int, rep: int, offset: int = 0) -> dict:
    """Per-query-position scores `(..., T)` from renormalised attention `(..., T, T)`; NaN where undefined."""
    induction = (attn * induction_mask(seg_len, rep, offset)).sum(-1).double()
    induction[..., : offset + seg_len] = float("nan")
    shifting = torch.full(attn.shape[:-1], float("nan"), dtype=torch.float64)
    shifting[..., 2:] = torch.diagonal(attn, offset=-1, dim1=-2, dim2=-1)[..., 1:].double()
    return {"induction": induction.numpy(), "shifting": shifting.numpy()}


def uniform_head_scores(seg_len: int = 25, rep: int = 3, bos: bool = False) -> dict[str, float]:
    """Return the induction and shifting scores of a head that attends uniformly to every earlier token.

    Computed with the same renormalisation and masks as `head_scores`, on a causal uniform pattern
    `(T, T)`, `T = [1 +] rep * seg_len`: the score a head gets without looking at the tokens at all.
    """
    by_position = uniform_scores_by_position(seg_len, rep, bos)
    return {kind: float(np.nanmean(values)) for kind, values in by_position.items()}


def uniform_scores_by_position(seg_len: int = 25, rep: int = 3, bos: bool = False) -> dict[str, np.ndarray]:
    """Per-query-position scores `(T,)` of a uniform-attention head, as `scores_by_position` computes them."""
    seg_len, rep = integer(seg_len, "seg_len", low=2), integer(rep, "rep", low=2)
    offset = int(bos)
    t = offset + rep * seg_len
    causal = torch.tril(torch.ones(t, t, dtype=torch.float64))
    attn = renormalise_without_first(causal / causal.sum(-1, keepdim=True))
    return position_scores_from_attention(attn, seg_len, rep, offset)


@dataclass
class AttentionExample:
    """Attention patterns `(n, T, T)` of named heads on one repeated random sequence `input_ids (T,)`."""

    captions: list[str]
    heads: list[list[int]]
    input_ids: np.ndarray
    attention: np.ndarray
    seg_len: int
    rep: int
    model: str
    name = "attention_examples"

    def record(self) -> dict:
        """JSON-friendly description: captions, heads, segment length, repetitions, model."""
        return {
            "captions": self.captions,
            "heads": self.heads,
            "seg_len": self.seg_len,
            "rep": self.rep,
            "model": self.model,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Token ids, heads and attention patterns, for the NPZ file."""
        return {"input_ids": self.input_ids, "heads": np.array(self.heads), "attention": self.attention}


def attention_example(
    model: AnyGPT2, heads: dict[str, list[int]], *, seg_len: int = 10, rep: int = 3, seed: int = 0
) -> AttentionExample:
    """Attention of each named head (`{caption: [layer, head]}`) on one sequence, `seg_len` tokens x `rep`."""
    shape = (model.config.n_layer, model.config.n_head)
    pairs = check_heads(list(heads.values()), shape, name="heads")
    seg_len, rep = integer(seg_len, "seg_len", low=2), integer(rep, "rep", low=2)
    ids = repeated_tokens(1, seg_len, model.config.vocab_size, rep=rep, seed=seed)
    attn = attention_patterns(model, ids)[:, 0].numpy()  # (n_layer, n_head, T, T)
    shown = np.stack([attn[layer, head] for layer, head in pairs])
    return AttentionExample(list(heads), pairs, ids[0].numpy(), shown, seg_len, rep, model_label(model))
