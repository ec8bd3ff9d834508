"""OV copying scores of every head: the full OV circuit `W_U W_OV W_E^T` from token to logit, in factored form.

Convention: `W_E = wte.weight` and `W_U` are `(vocab, d_model)`; the head writes `W_OV x` with
`W_OV = W_O W_V^T` (`ihlib.model.weights`). The full OV circuit of a head is the `(vocab, vocab)` matrix
`M = W_U W_OV W_E^T`: `M[t, s]` is the logit the head adds to output token `t` when it attends to a
position holding source token `s`. It is kept factored as `M = A B^T` with `A = W_U W_O` and
`B = W_E W_V`, both `(vocab, d_head)` per head.

LayerNorm (the head's `ln_1` and the final `ln_f`), the biases and the position embeddings are
ignored, as in Elhage et al. (2021): the scores describe the weight matrices, not the full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_heads
from ihlib.model.loading import AnyGPT2, transformer_of, unembedding
from ihlib.model.validation import integer
from ihlib.model.weights import O, V, head_weights

DEFAULT_MAX_ELEMENTS = 2**24  # largest (heads x vocab x sources) logit block formed at once: 128 MiB in float64
MAX_SOURCES = 2048  # source tokens checked by default: the whole vocabulary up to this size, else a sample


@dataclass
class OVCopyingScores:
    """Per-head OV copying scores, each `(n_layer, n_head)`, and what they were computed on.

    `token_fraction[l, h]`: share of the evaluated source tokens `s` whose own token wins the column
    `M[:, s]` (argmax over output tokens `t` of `M[t, s]` equals `s`); chance is `1 / vocab_size`.
    `eigen_score[l, h]`: `sum(lambda) / sum(|lambda|)` over the eigenvalues of `M` (Elhage et al. 2021),
    between -1 and 1; 1 when every eigenvalue is positive (copying), about 0 for a random matrix.
    """

    token_fraction: np.ndarray
    eigen_score: np.ndarray
    sources: np.ndarray
    vocab_size: int

    @property
    def chance_fraction(self) -> float:
        """Token fraction of a head whose winning output token is unrelated to the source: `1 / vocab_size`."""
        return 1.0 / self.vocab_size


@dataclass
class OVParts:
    """The matrices of every head's full OV circuit, on the model's device; heads flattened layer-major.

    `w_e`, `w_u`: `(vocab, d_model)`; `w_o`, `w_v`: `(n_layer * n_head, d_model, d_head)`, so that
    head `i`'s circuit is `M_i = (w_u @ w_o[i]) @ (w_e @ w_v[i]).T`.
    """

    w_e: torch.Tensor
    w_u: torch.Tensor
    w_o: torch.Tensor
    w_v: torch.Tensor


def ov_parts(model: AnyGPT2, *, dtype: torch.dtype = torch.float64) -> OVParts:
    """Collect `W_E`, `W_U` and every head's `W_O`, `W_V` in `dtype` (no LayerNorm, biases or positions)."""
    W_all = head_weights(model).to(dtype).flatten(0, 1)  # (heads, 4, d_model, d_head)
    w_e = transformer_of(model).wte.weight.detach().to(dtype)
    w_u = unembedding(model).detach().to(dtype)
    return OVParts(w_e=w_e, w_u=w_u, w_o=W_all[:, O], w_v=W_all[:, V])


def ov_circuit_block(model: AnyGPT2, layer: int, head: int, tokens: np.ndarray | list[int]) -> np.ndarray:
    """Return the block `M[tokens][:, tokens]` of one head's full OV circuit, `(n, n)`: rows output, columns source."""
    ((layer, head),) = check_heads([[layer, head]], (model.config.n_layer, model.config.n_head), name="(layer, head)")
    parts = ov_parts(model)
    index = _checked_tokens(tokens, parts.w_e.shape[0], "tokens").to(parts.w_e.device)
    i = int(layer) * model.config.n_head + int(head)
    return ((parts.w_u[index] @ parts.w_o[i]) @ (parts.w_e[index] @ parts.w_v[i]).T).cpu().numpy()


def default_sources(vocab_size: int, max_sources: int, seed: int) -> np.ndarray:
    """Every token id `(vocab_size,)`, or a seeded sorted sample of `max_sources` of them from a larger vocabulary."""
    max_sources = integer(max_sources, "max_sources", low=1)
    if vocab_size <= max_sources:
        return np.arange(vocab_size)
    return np.sort(np.random.default_rng(seed).choice(vocab_size, size=max_sources, replace=False))


def ov_copying_scores(
    model: AnyGPT2,
    *,
    sources: np.ndarray | list[int] | None = None,
    max_sources: int = MAX_SOURCES,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtype: torch.dtype = torch.float32,
) -> OVCopyingScores:
    """Token-fraction and eigenvalue copying scores of every head, batched over heads.

    `sources`: the source token ids whose column argmax is checked (default: the whole vocabulary, or a seeded
    sorted sample of `max_sources` of a larger one: at GPT-2's 50,257 tokens the whole `vocab x vocab` argmax of
    144 heads is 2e13 multiply-adds, hours on a CPU; 2,048 sources take about a minute).
    The `(vocab, vocab)` circuit is never formed whole: heads and columns are taken in chunks so that
    at most `max_elements` numbers exist at once per array; the argmax runs in `dtype` on the model's
    device. The eigenvalues come, in float64, from the `d_head x d_head` matrix `W_V^T (W_E^T W_U) W_O`,
    which has the same nonzero eigenvalues as `M` (`eig(AB) = eig(BA)`).
    """
    max_elements = integer(max_elements, "max_elements", low=1)
    parts = ov_parts(model, dtype=dtype)
    vocab, d_head = parts.w_e.shape[0], parts.w_o.shape[2]
    index = _checked_tokens(default_sources(vocab, max_sources, seed) if sources is None else sources, vocab, "sources")
    if int(max_elements) < vocab * d_head:
        raise IHLibError(
            f"max_elements={max_elements} is too small: one head's W_U W_O needs vocab * d_head = {vocab * d_head}."
        )
    shape = (model.config.n_layer, model.config.n_head)
    fraction = token_fraction(parts, index.to(parts.w_e.device), max_elements=max_elements).view(shape)
    eigen = eigenvalue_copying_score(parts if dtype == torch.float64 else ov_parts(model)).view(shape)
    return OVCopyingScores(fraction.cpu().numpy(), eigen.cpu().numpy(), index.numpy(), vocab)


def token_fraction(parts: OVParts, sources: torch.Tensor, *, max_elements: int) -> torch.Tensor:
    """Share of `sources` whose column of `M` peaks at the source's own row, per head `(heads,)`.

    Heads run in chunks whose factor `W_U W_O` `(chunk, vocab, d_head)` and logit block
    `(chunk, columns, vocab)` hold at most `max_elements` numbers each. Ties go to the first maximum.
    """
    n_heads, vocab, d_head = parts.w_o.shape[0], parts.w_u.shape[0], parts.w_o.shape[2]
    head_chunk = max(1, int(max_elements) // (vocab * max(d_head, 1)))
    source_chunk = max(1, int(max_elements) // (min(head_chunk, n_heads) * vocab))
    wins = torch.zeros(n_heads, dtype=torch.float64, device=sources.device)
    for heads in torch.arange(n_heads, device=sources.device).split(head_chunk):
        out_side = parts.w_u @ parts.w_o[heads]  # (chunk, vocab, d_head)
        source_side = parts.w_e[sources] @ parts.w_v[heads]  # (chunk, n_sources, d_head)
        for columns in torch.arange(len(sources), device=sources.device).split(source_chunk):
            logits = source_side[:, columns] @ out_side.transpose(1, 2)  # (chunk, columns, vocab): M transposed
            wins[heads] += (logits.argmax(dim=-1) == sources[columns]).sum(dim=1)
    return wins / len(sources)


def eigenvalue_copying_score(parts: OVParts) -> torch.Tensor:
    """`sum(lambda) / sum(|lambda|)` over the eigenvalues of each head's `M`, `(heads,)`, from `d_head`-square cores."""
    gram = parts.w_e.T @ parts.w_u  # (d_model, d_model)
    core = parts.w_v.transpose(1, 2) @ gram @ parts.w_o  # (heads, d_head, d_head): B^T A
    return copying_ratio(torch.linalg.eigvals(core.cpu()))


def copying_ratio(eigenvalues: torch.Tensor) -> torch.Tensor:
    """`sum(lambda).real / sum(|lambda|)` over the last axis of complex `eigenvalues`."""
    return eigenvalues.sum(-1).real / eigenvalues.abs().sum(-1).clamp_min(1e-300)


def _checked_tokens(tokens: np.ndarray | list[int], vocab: int, name: str) -> torch.Tensor:
    """Return `tokens` as a 1-D long tensor, or raise naming `name` and the allowed range `0..vocab-1`."""
    index = torch.as_tensor(np.asarray(tokens), dtype=torch.long).reshape(-1)
    if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= vocab:
        raise IHLibError(f"{name} must be a non-empty list of token ids in 0..{vocab - 1}, got {tokens!r}.")
    return index
