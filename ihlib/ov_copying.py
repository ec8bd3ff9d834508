"""OV copying scores of every head: the full OV circuit `W_U W_OV W_E^T` from token to logit, in factored form.

Convention: `W_E = wte.weight` and `W_U` are `(vocab, d_model)`; the head writes `W_OV x` with
`W_OV = W_O W_V^T` (`ihlib.weights`). The full OV circuit of a head is the `(vocab, vocab)` matrix
`M = W_U W_OV W_E^T`: `M[t, s]` is the logit the head adds to output token `t` when it attends to a
position holding source token `s`. It is kept factored as `M = A B^T` with `A = W_U W_O` and
`B = W_E W_V`, both `(vocab, d_head)`.

LayerNorm (the head's `ln_1` and the final `ln_f`), the biases and the position embeddings are
ignored, as in Elhage et al. (2021): the scores describe the weight matrices, not the full forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.errors import IHLibError
from ihlib.models import AnyGPT2, transformer_of, unembedding
from ihlib.weights import O, V, head_weights

DEFAULT_MAX_ELEMENTS = 2**24  # largest (heads x vocab x sources) logit block formed at once: 128 MiB in float64


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


def ov_circuit_factors(model: AnyGPT2) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(A, B)`, each `(n_layer, n_head, vocab, d_head)` in float64, with `M[l, h] = A[l, h] @ B[l, h].T`.

    `A = W_U W_O` (output side), `B = W_E W_V` (source side); no LayerNorm, biases or positions.
    """
    W_all = head_weights(model).double()
    w_e = transformer_of(model).wte.weight.detach().double().cpu()
    w_u = unembedding(model).detach().double().cpu()
    return w_u @ W_all[:, :, O].cpu(), w_e @ W_all[:, :, V].cpu()


def ov_circuit_block(model: AnyGPT2, layer: int, head: int, tokens: np.ndarray | list[int]) -> np.ndarray:
    """Return the block `M[tokens][:, tokens]` of one head's full OV circuit, `(n, n)`: rows output, columns source."""
    A, B = ov_circuit_factors(model)
    _check_head(model, layer, head)
    index = _checked_tokens(tokens, A.shape[2], "tokens")
    return (A[layer, head, index] @ B[layer, head, index].T).numpy()


def ov_copying_scores(
    model: AnyGPT2,
    *,
    sources: np.ndarray | list[int] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> OVCopyingScores:
    """Token-fraction and eigenvalue copying scores of every head, batched over heads.

    `sources`: the source token ids whose column argmax is checked (default: the whole vocabulary).
    The `(vocab, vocab)` circuit is never formed whole: columns are taken in chunks so that at most
    `max_elements` logits exist at once over all heads. The eigenvalues come from the `d_head x d_head`
    matrix `B^T A`, which has the same nonzero eigenvalues as `M = A B^T`.
    """
    A, B = ov_circuit_factors(model)
    n_layer, n_head, vocab, d_head = A.shape
    index = _checked_tokens(np.arange(vocab) if sources is None else sources, vocab, "sources")
    if int(max_elements) < n_layer * n_head * vocab:
        raise IHLibError(
            f"max_elements={max_elements} is too small: one source column over all heads needs "
            f"{n_layer * n_head * vocab} (n_layer * n_head * vocab)."
        )
    A, B = A.flatten(0, 1), B.flatten(0, 1)  # (heads, vocab, d_head)
    fraction = token_fraction(A, B, index, max_elements=max_elements).view(n_layer, n_head)
    eigen = eigenvalue_copying_score(A, B).view(n_layer, n_head)
    return OVCopyingScores(fraction.numpy(), eigen.numpy(), index.numpy(), vocab)


def token_fraction(A: torch.Tensor, B: torch.Tensor, sources: torch.Tensor, *, max_elements: int) -> torch.Tensor:
    """Share of `sources` whose column of `M = A B^T` peaks at the source's own row, per head: `(heads,)`.

    `A`, `B`: `(heads, vocab, d_head)`. Ties count as wins only when the source is the first maximum.
    """
    n_heads, vocab, _ = A.shape
    chunk = max(1, int(max_elements) // (n_heads * vocab))
    wins = torch.zeros(n_heads, dtype=torch.float64)
    for part in sources.split(chunk):
        logits = A @ B[:, part].transpose(1, 2)  # (heads, vocab, chunk): rows output, columns source
        wins += (logits.argmax(dim=1) == part).sum(dim=1)
    return wins / len(sources)


def eigenvalue_copying_score(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """`sum(lambda) / sum(|lambda|)` over the eigenvalues of `M = A B^T`, per head `(heads,)`, via `B^T A`."""
    core = B.transpose(1, 2) @ A  # (heads, d_head, d_head): eig(A B^T) = eig(B^T A) plus zeros
    eigenvalues = torch.linalg.eigvals(core)
    return eigenvalues.sum(-1).real / eigenvalues.abs().sum(-1).clamp_min(1e-300)


def _checked_tokens(tokens: np.ndarray | list[int], vocab: int, name: str) -> torch.Tensor:
    """Return `tokens` as a 1-D long tensor, or raise naming `name` and the allowed range `0..vocab-1`."""
    index = torch.as_tensor(np.asarray(tokens), dtype=torch.long).reshape(-1)
    if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= vocab:
        raise IHLibError(f"{name} must be a non-empty list of token ids in 0..{vocab - 1}, got {tokens!r}.")
    return index


def _check_head(model: AnyGPT2, layer: int, head: int) -> None:
    """Raise an `IHLibError` naming the allowed ranges when `(layer, head)` is not a head of `model`."""
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (0 <= int(layer) < n_layer and 0 <= int(head) < n_head):
        raise IHLibError(
            f"(layer, head) = ({layer}, {head}) is out of range: layers 0..{n_layer - 1}, heads 0..{n_head - 1}."
        )
