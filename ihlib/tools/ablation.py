"""Zero and mean ablation of attention heads, and their effect on copying repeated random tokens.

A head's output is its slice `z[..., h*d_head:(h+1)*d_head]` of the input of its layer's `attn.c_proj`,
`(batch, seq, n_head*d_head)`, before `W_O`. Ablation replaces that slice through a forward pre-hook:
- zero: by 0 (the `c_proj` bias stays);
- mean: by the head's mean output over a reference batch, per position: `(seq, d_head)` averaged over
  the reference sequences, so what the head writes at each position on average is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ihlib.model.batches import copy_positions, repeated_tokens
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import check_heads
from ihlib.model.loading import AnyGPT2, transformer_of
from ihlib.tools.losses import bootstrap_mean_interval, target_log_probs

AblationKind = Literal["zero", "mean"]
ABLATION_KINDS: tuple[str, ...] = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """One condition: the heads `[(layer, head), ...]` ablated together, and how; no heads is the intact model."""

    heads: tuple[tuple[int, int], ...] = ()
    kind: AblationKind = "zero"
    label: str = ""

    def __post_init__(self) -> None:
        """Store `heads` as a tuple of `(layer, head)` int pairs, whatever sequences were passed."""
        object.__setattr__(self, "heads", tuple((int(layer), int(head)) for layer, head in self.heads))

    @property
    def name(self) -> str:
        """`label`, or `"none"` / `"zero L1H2+L1H3"` built from the heads."""
        if self.label:
            return self.label
        if not self.heads:
            return "none"
        return f"{self.kind} " + "+".join(f"L{layer}H{head}" for layer, head in self.heads)


@dataclass
class AblationCopying:
    """Copying under each condition, `(n_conditions,)` means with bootstrap intervals over sequences.

    `prob`: probability of the correct next token; `error`: top-1 error; both at `positions` (query
    positions from `ihlib.model.batches.copy_positions`), averaged per sequence first. `per_sequence_*` is
    `(n_conditions, batch)`.
    """

    conditions: list[Ablation]
    prob: np.ndarray
    prob_low: np.ndarray
    prob_high: np.ndarray
    error: np.ndarray
    error_low: np.ndarray
    error_high: np.ndarray
    per_sequence_prob: np.ndarray
    per_sequence_error: np.ndarray
    positions: np.ndarray
    vocab_size: int
    settings: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """One name per condition, as on the figures."""
        return [condition.name for condition in self.conditions]

    @property
    def chance_error(self) -> float:
        """Top-1 error of a model that guesses uniformly: `1 - 1 / vocab_size`."""
        return 1.0 - 1.0 / self.vocab_size

    name = "ablation_copying"

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-condition means and intervals, per-sequence values `(n_conditions, batch)` and the positions."""
        fields = ("prob", "prob_low", "prob_high", "error", "error_low", "error_high")
        per_sequence = ("per_sequence_prob", "per_sequence_error", "positions")
        return {key: getattr(self, key) for key in (*fields, *per_sequence)}

    def record(self) -> dict:
        """JSON-friendly conditions (name, heads, kind) with their mean copying and 95% intervals, and the settings."""
        rows = [
            {
                "name": condition.name,
                "heads": [list(pair) for pair in condition.heads],
                "kind": condition.kind,
                "error": [float(self.error[i]), float(self.error_low[i]), float(self.error_high[i])],
                "prob": [float(self.prob[i]), float(self.prob_low[i]), float(self.prob_high[i])],
            }
            for i, condition in enumerate(self.conditions)
        ]
        return {"conditions": rows, "chance_error": self.chance_error, "vocab_size": self.vocab_size, **self.settings}


def single_and_group_ablations(
    heads: Sequence[Sequence[int]], *, kinds: Sequence[AblationKind] = ABLATION_KINDS
) -> list[Ablation]:
    """The intact model, then per kind each head alone and all `heads` together: `1 + len(kinds) * (len(heads) + 1)`."""
    pairs = tuple((int(layer), int(head)) for layer, head in heads)
    conditions = [Ablation()]
    for kind in kinds:
        conditions += [Ablation((pair,), kind) for pair in pairs]
        conditions.append(Ablation(pairs, kind, label=f"{kind} all {len(pairs)}"))
    return conditions


def validated_heads(model: AnyGPT2, heads: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Return `heads` as `((layer, head), ...)` of ints (`check_heads`; an empty list allowed), or raise `HeadError`."""
    shape = (model.config.n_layer, model.config.n_head)
    return tuple((layer, head) for layer, head in check_heads(heads, shape, name="heads", nonempty=False))


def head_output_means(model: AnyGPT2, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean output of every head over the batch, per position: `(n_layer, seq, n_head, d_head)`, one forward pass."""
    body = transformer_of(model)
    n_head = model.config.n_head
    means: list[torch.Tensor | None] = [None] * len(body.h)

    def recorder(layer: int):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            z = args[0]  # (batch, seq, n_head * d_head)
            means[layer] = z.mean(dim=0).unflatten(-1, (n_head, -1)).detach()

        return hook

    handles = [block.attn.c_proj.register_forward_pre_hook(recorder(i)) for i, block in enumerate(body.h)]
    try:
        with torch.no_grad():
            body(input_ids.to(next(body.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(means)


@contextmanager
def ablated(
    model: AnyGPT2,
    heads: Sequence[Sequence[int]],
    *,
    kind: AblationKind = "zero",
    means: torch.Tensor | None = None,
) -> Iterator[AnyGPT2]:
    """Within the block, `model` runs with `heads` ablated (`kind` "zero" or "mean"); hooks go, also on error.

    Mean ablation needs `means` from `head_output_means` on a reference batch at least as long as the input.
    """
    pairs = validated_heads(model, heads)
    if kind not in ABLATION_KINDS:
        raise IHLibError(f"kind must be one of {ABLATION_KINDS}, got {kind!r}.")
    if kind == "mean" and means is None:
        raise IHLibError("kind='mean' needs means=head_output_means(model, reference_ids).")
    n_head = model.config.n_head

    def hook_for(layer: int, heads_here: list[int]):
        return _replacing_hook(heads_here, n_head, means[layer] if kind == "mean" else None)

    with head_output_hooks(model, pairs, hook_for):
        yield model


@contextmanager
def head_output_hooks(
    model: AnyGPT2, heads: Sequence[tuple[int, int]], hook_for: Callable[[int, list[int]], Callable]
) -> Iterator[AnyGPT2]:
    """Within the block, each layer with some of `heads` `[(layer, head), ...]` runs `hook_for(layer, its heads)` as
    a forward pre-hook on its `attn.c_proj` (input `(batch, seq, n_head*d_head)`); hooks go, also on error."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    body = transformer_of(model)
    handles = [
        body.h[layer].attn.c_proj.register_forward_pre_hook(hook_for(layer, heads_here))
        for layer, heads_here in by_layer.items()
    ]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _replacing_hook(heads: list[int], n_head: int, layer_means: torch.Tensor | None):
    """Pre-hook setting the slices of `heads` in `c_proj`'s input to 0, or to `layer_means` `(seq, n_head, d_head)`."""

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        z = args[0].unflatten(-1, (n_head, -1)).clone()  # (batch, seq, n_head, d_head)
        if layer_means is None:
            z[:, :, heads] = 0.0
        else:
            seq = z.shape[1]
            if seq > layer_means.shape[0]:
                raise IHLibError(
                    f"input of {seq} tokens is longer than the {layer_means.shape[0]} of the mean-ablation reference."
                )
            z[:, :, heads] = layer_means[:seq, heads].to(z)
        return (z.flatten(-2),)

    return hook


def copying_under_ablations(
    model: AnyGPT2,
    conditions: Sequence[Ablation],
    *,
    seg_len: int = 25,
    rep: int = 3,
    batch_size: int = 50,
    burn_in: int = 2,
    seed: int = 0,
    reference_seed: int = 1,
    bos_token_id: int | None = None,
    n_boot: int = 1000,
) -> AblationCopying:
    """Copying on repeated random segments under each condition: one forward pass per condition, no reloads.

    Test sequences come from `seed`; mean ablations use per-position means over a reference batch of the
    same shape from `reference_seed` (one extra forward pass, only when a condition needs it).
    """
    conditions = list(conditions)
    if not conditions:
        raise IHLibError("conditions must hold at least one Ablation (Ablation() is the intact model).")
    vocab = model.config.vocab_size
    ids = repeated_tokens(batch_size, seg_len, vocab, rep=rep, seed=seed, bos_token_id=bos_token_id)
    if ids.shape[1] > model.config.n_positions:
        raise IHLibError(
            f"seg_len * rep = {ids.shape[1]} tokens exceeds the model's context of {model.config.n_positions}."
        )
    positions = copy_positions(seg_len, rep=rep, burn_in=burn_in, bos=bos_token_id is not None)
    means = None
    if any(condition.kind == "mean" and condition.heads for condition in conditions):
        reference = repeated_tokens(batch_size, seg_len, vocab, rep=rep, seed=reference_seed, bos_token_id=bos_token_id)
        means = head_output_means(model, reference)
    probs, errors = [], []
    for condition in conditions:
        with ablated(model, condition.heads, kind=condition.kind, means=means):
            log_p, top1 = target_log_probs(model, ids)
        probs.append(log_p[:, positions].exp().double().mean(dim=1).numpy())
        errors.append(1.0 - top1[:, positions].double().mean(dim=1).numpy())
    prob, error = np.stack(probs), np.stack(errors)  # (n_conditions, batch)
    prob_low, prob_high = bootstrap_mean_interval(prob.T, n_boot=n_boot, seed=seed)
    error_low, error_high = bootstrap_mean_interval(error.T, n_boot=n_boot, seed=seed)
    return AblationCopying(
        conditions=conditions,
        prob=prob.mean(axis=1),
        prob_low=prob_low,
        prob_high=prob_high,
        error=error.mean(axis=1),
        error_low=error_low,
        error_high=error_high,
        per_sequence_prob=prob,
        per_sequence_error=error,
        positions=positions,
        vocab_size=int(vocab),
        settings={
            "seg_len": int(seg_len),
            "rep": int(rep),
            "batch_size": int(batch_size),
            "burn_in": int(burn_in),
            "seed": int(seed),
            "reference_seed": int(reference_seed),
            "bos_token_id": bos_token_id,
            "mean_ablation": "per-position mean of the head's output over the reference batch",
        },
    )


def per_layer_ablations(heads: Sequence[Sequence[int]], *, kind: AblationKind = "zero") -> list[Ablation]:
    """The intact model, then the `heads` of each layer together, one condition per layer that holds any (layers
    ascending), labelled e.g. "zero layer 1 (4 heads)"."""
    pairs = sorted((int(layer), int(head)) for layer, head in heads)
    layers = sorted({layer for layer, _ in pairs})
    conditions = [Ablation()]
    for layer in layers:
        group = tuple(pair for pair in pairs if pair[0] == layer)
        conditions.append(Ablation(group, kind, label=f"{kind} layer {layer} ({len(group)} heads)"))
    return conditions
