"""Circuits that include the route the previous token takes, beside the weights-only `W_qk(IH) W_ov(SH)`.

- The empirical token circuit of a head, measured on a batch: `Qbar[t]` is its mean query over the positions
  whose token is `t`, `Kbar[s]` its mean centred key (the mean key of every position subtracted) over the positions
  whose previous token is `s`; `M = Qbar Kbar^T` `(n_tokens, n_tokens)`, over the tokens seen in both roles.
  Layer norms, biases, MLPs and every route are inside it. Statistics: the diagonal z-score
  (`ihlib.core.circuits.diagonal_zscore`) and the own-token win rate (row `t`'s largest entry is `M[t, t]`),
  with a null from permuting the key tokens (the same matrix, the match between the two sides broken).
- The weight circuit through an MLP: the output map `W_o` of each head that feeds MLP `l` is replaced by
  `Jbar W_o`, `Jbar` the Jacobian of `x -> mlp_l(ln_2(x))` averaged over the batch's positions (position 0 left
  out), so `W_qk(IH) Jbar W_ov(SH)` is the QK-OV circuit of the route through that MLP, in factored form
  (`(I + Jbar) W_o` with `include_direct`). Claims 1 and 2 take the returned `W_all` as they take the weights'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.circuits import diagonal_zscore
from ihlib.model.errors import ParameterError
from ihlib.model.head_ids import check_heads, head_label
from ihlib.model.loading import AnyGPT2, transformer_of

Pair = tuple[int, int]


@dataclass(frozen=True)
class TokenCircuits:
    """Empirical token circuits of `heads`: `z`, `wins (n_heads,)`; the permutation nulls `null_z`, `null_wins
    (n_heads, n_perm)`; `tokens (n_tokens,)` the ids kept; `corner (n_heads, n_corner, n_corner)` the top-left
    block of each `M` for display."""

    heads: tuple[Pair, ...]
    tokens: np.ndarray
    z: np.ndarray
    wins: np.ndarray
    null_z: np.ndarray
    null_wins: np.ndarray
    corner: np.ndarray
    n_positions: int
    name = "token_circuits"

    def z_percentile(self) -> np.ndarray:
        """Percentage of the permutation null at or below each head's z-score `(n_heads,)`."""
        return 100.0 * (self.null_z <= self.z[:, None]).mean(-1)

    def arrays(self) -> dict[str, np.ndarray]:
        """Statistics, nulls, the kept tokens and the displayed corners."""
        keys = ("tokens", "z", "wins", "null_z", "null_wins", "corner")
        return {key: getattr(self, key) for key in keys} | {"heads": np.array(self.heads)}

    def record(self) -> dict:
        """JSON-friendly per-head z-score, win rate and where each falls in its permutation null."""
        percentiles = self.z_percentile()
        return {
            "heads": {
                head_label(*pair): {
                    "z": float(self.z[i]),
                    "wins": float(self.wins[i]),
                    "null_z_95": float(np.percentile(self.null_z[i], 95)),
                    "null_wins_95": float(np.percentile(self.null_wins[i], 95)),
                    "z_percentile": float(percentiles[i]),
                }
                for i, pair in enumerate(self.heads)
            },
            "n_tokens": int(self.tokens.size),
            "n_positions": self.n_positions,
            "n_perm": int(self.null_z.shape[-1]),
        }


def queries_and_keys(model: AnyGPT2, heads: Sequence[Pair], input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Queries and keys of `heads` on `input_ids (batch, seq)`: two `(n_heads, batch, seq, d_head)`, one forward."""
    body, n_head = transformer_of(model), model.config.n_head
    d_model = model.config.n_embd
    captured: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[layer] = output.detach()

        return hook

    handles = [body.h[layer].attn.c_attn.register_forward_hook(keep(layer)) for layer in {l for l, _ in heads}]
    try:
        with torch.no_grad():
            body(input_ids.to(next(body.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    split = {layer: out.unflatten(-1, (3, n_head, d_model // n_head)).float().cpu() for layer, out in captured.items()}
    queries = torch.stack([split[layer][..., 0, head, :] for layer, head in heads])
    keys = torch.stack([split[layer][..., 1, head, :] for layer, head in heads])
    return queries, keys


def grouped_means(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of `values (n_heads, N, k)` per group id `groups (N,)`: `(n_heads, n_groups, k)`; counts `(n_groups,)`."""
    sums = torch.zeros(values.shape[0], n_groups, values.shape[-1], dtype=torch.float64)
    sums.index_add_(1, groups, values.double())
    counts = torch.bincount(groups, minlength=n_groups)
    return sums / counts.clamp_min(1)[None, :, None], counts


def empirical_token_circuits(
    model: AnyGPT2,
    heads: Sequence[Sequence[int]],
    input_ids: torch.Tensor,
    *,
    n_perm: int = 200,
    n_corner: int = 32,
    seed: int = 0,
) -> TokenCircuits:
    """Empirical token circuit `M = Qbar Kbar^T` of each head on `input_ids (batch, seq)` (one forward), its diagonal
    z-score and own-token win rate, and `n_perm` key-token permutations of the same `M` as their null."""
    pairs = tuple(tuple(p) for p in check_heads(heads, (model.config.n_layer, model.config.n_head), name="heads"))
    if input_ids.ndim != 2 or input_ids.shape[1] < 3:
        raise ParameterError(f"input_ids must be (batch, seq) with seq >= 3, got shape {tuple(input_ids.shape)}.")
    queries, keys = queries_and_keys(model, pairs, input_ids)
    ids = input_ids.cpu()
    vocab = model.config.vocab_size
    q_mean, q_count = grouped_means(queries[:, :, 1:].flatten(1, 2), ids[:, 1:].flatten(), vocab)
    k = keys[:, :, 1:].flatten(1, 2).double()
    k_mean, k_count = grouped_means(k - k.mean(1, keepdim=True), ids[:, :-1].flatten(), vocab)
    tokens = torch.nonzero((q_count > 0) & (k_count > 0)).flatten()
    if tokens.numel() < 2:
        raise ParameterError("Fewer than 2 tokens occur both as a current and as a previous token: use a larger batch.")
    M = q_mean[:, tokens] @ k_mean[:, tokens].mT  # (n_heads, n_tokens, n_tokens)
    rng = np.random.default_rng(seed)
    permutations = torch.from_numpy(np.stack([rng.permutation(len(tokens)) for _ in range(n_perm)]))
    null_z, null_wins = permuted_statistics(M, permutations)
    return TokenCircuits(
        pairs, tokens.numpy(), diagonal_zscore(M).numpy(), own_token_wins(M).numpy(), null_z, null_wins,
        M[:, :n_corner, :n_corner].numpy(), int(ids[:, 1:].numel()),
    )  # fmt: skip


def own_token_wins(M: torch.Tensor) -> torch.Tensor:
    """Share of rows `t` of `M (..., n, n)` whose largest entry is `M[t, t]`: `(...)`."""
    return (M.argmax(-1) == torch.arange(M.shape[-1])).double().mean(-1)


def permuted_statistics(M: torch.Tensor, permutations: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal z-score and win rate of `M[..., :, perm]` for each permutation `(n_perm, n)`: two `(..., n_perm)`."""
    n = M.shape[-1]
    rows = torch.arange(n)
    mean, std = M.mean((-2, -1)), M.std((-2, -1), correction=0)
    picked = M[..., rows[None, :], permutations]  # (..., n_perm, n): M[t, perm[t]]
    z = (picked.mean(-1) - mean[..., None]) / std[..., None]
    winners = M.argmax(-1)  # (..., n)
    wins = (winners[..., None, :] == permutations).double().mean(-1)
    return z.numpy(), wins.numpy()
