"""Reversible weight edits of attention heads, as context managers that restore every touched tensor bitwise.

A head's QK component is its `W_q`, `W_k` columns of `c_attn` and their bias slices; its OV component is
its `W_v` columns and bias slice and its rows of `c_proj.weight` (`W_o^T` in Conv1D layout). The shared
`c_proj` bias belongs to no head and is never touched.

Edits of one model nest like `with` blocks. Exiting one before the edits entered after it, or casting or moving
the model inside an edit, raises `EditError` after restoring every touched slice (in the current dtype and device).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.model.errors import EditError, IHLibError
from ihlib.model.head_ids import all_heads, check_heads
from ihlib.model.loading import AnyGPT2, transformer_of

COMPONENTS = ("QK", "OV")
EXCHANGE_KINDS = ("original", "shuffle", "random baseline")

_QKV_INDEX = {"q": 0, "k": 1, "v": 2}


def check_component(component: str) -> str:
    """Return `component` if it is "QK" or "OV", else raise naming the allowed values."""
    if component not in COMPONENTS:
        raise IHLibError(f"component must be one of {COMPONENTS}, got {component!r}.")
    return component


def model_heads(model: AnyGPT2, heads: object, name: str = "heads") -> list[list[int]]:
    """Return `heads` as distinct `[layer, head]` int pairs of `model` (`heads.check_heads`), or raise."""
    return check_heads(heads, (model.config.n_layer, model.config.n_head), name=name)


@dataclass(frozen=True, eq=False)
class Slot:
    """A slice of the parameter `module.<name>` that an edit touches, found again after the model is cast or moved."""

    module: torch.nn.Module
    name: str
    index: tuple[slice, ...]

    @property
    def param(self) -> torch.nn.Parameter:
        """The module's current parameter (`.to()` may have replaced the object or its data)."""
        return getattr(self.module, self.name)

    def view(self) -> torch.Tensor:
        """Return the in-place view of the slice in the parameter's current data."""
        return self.param.detach()[self.index]


def _qkv_columns(model: AnyGPT2, layer: int, head: int, part: str) -> tuple[Slot, Slot]:
    """Return slots `(weight (d_model, d_head), bias (d_head,))` of one head's q, k or v in `c_attn`."""
    attn = transformer_of(model).h[layer].attn
    d_model = attn.c_attn.weight.shape[0]
    d_head = d_model // model.config.n_head
    start = _QKV_INDEX[part] * d_model + head * d_head
    columns = slice(start, start + d_head)
    return Slot(attn.c_attn, "weight", (slice(None), columns)), Slot(attn.c_attn, "bias", (columns,))


def _output_rows(model: AnyGPT2, layer: int, head: int) -> Slot:
    """Return the slot `(d_head, d_model)` of one head's rows of `c_proj.weight` (= `W_o^T`)."""
    c_proj = transformer_of(model).h[layer].attn.c_proj
    d_head = c_proj.weight.shape[1] // model.config.n_head
    return Slot(c_proj, "weight", (slice(head * d_head, (head + 1) * d_head),))


def component_slots(model: AnyGPT2, layer: int, head: int, component: str) -> list[Slot]:
    """Return the slots of one head's component: QK -> `[W_q, b_q, W_k, b_k]`; OV -> `[W_v, b_v, W_o^T rows]`."""
    if check_component(component) == "QK":
        return [*_qkv_columns(model, layer, head, "q"), *_qkv_columns(model, layer, head, "k")]
    return [*_qkv_columns(model, layer, head, "v"), _output_rows(model, layer, head)]


def component_views(model: AnyGPT2, layer: int, head: int, component: str) -> list[torch.Tensor]:
    """Return in-place views of one head's component: QK -> `[W_q, b_q, W_k, b_k]`; OV -> `[W_v, b_v, W_o^T rows]`."""
    return [slot.view() for slot in component_slots(model, layer, head, component)]


class _ActiveEdit:
    """One entered edit: its slots, their values on entry, and the storage and placement they had then."""

    def __init__(self, slots: list[Slot]):
        self.slots = slots
        self.saved = [slot.view().clone() for slot in slots]
        self.params = [(slot.param, slot.param.data_ptr()) for slot in slots]
        self.placement = _placement(slots)

    def moved(self) -> bool:
        """Whether a touched parameter was replaced or got new data (the model was cast or moved) since entry."""
        current = [(slot.param, slot.param.data_ptr()) for slot in self.slots]
        return any(
            new is not old or new_ptr != old_ptr
            for (new, new_ptr), (old, old_ptr) in zip(current, self.params, strict=True)
        )

    def restore(self) -> None:
        """Write the saved values back, in reverse order, cast to each parameter's current dtype and device."""
        with torch.no_grad():
            for slot, original in zip(reversed(self.slots), reversed(self.saved), strict=True):
                view = slot.view()
                view.copy_(original.to(dtype=view.dtype, device=view.device))


def _placement(slots: list[Slot]) -> str:
    """Return "dtype on device" of the first slot's parameter, e.g. "torch.float32 on cpu"."""
    param = slots[0].param if slots else None
    return "no parameters" if param is None else f"{param.dtype} on {param.device}"


_ACTIVE_EDITS: weakref.WeakKeyDictionary[torch.nn.Module, list[_ActiveEdit]] = weakref.WeakKeyDictionary()


@contextmanager
def restored_on_exit(model: AnyGPT2, slots: list[Slot]) -> Iterator[None]:
    """Save `slots` on entry and write them back bitwise on exit, also when an exception escapes.

    Raises EditError on exit when edits entered later are still active (they are undone first, so the model is
    back where it was before this edit) or when the model was cast or moved inside (values restored, cast).
    """
    edit = _ActiveEdit(slots)
    stack = _ACTIVE_EDITS.setdefault(transformer_of(model), [])
    stack.append(edit)
    try:
        yield
    finally:
        _exit_edit(stack, edit)


def _exit_edit(stack: list[_ActiveEdit], edit: _ActiveEdit) -> None:
    """Undo `edit` and every edit entered after it, newest first; raise EditError describing any misuse."""
    if not any(active is edit for active in stack):
        return  # undone already by an edit entered before it that was exited first (and raised there)
    position = next(i for i, active in enumerate(stack) if active is edit)
    undone = stack[position:]
    del stack[position:]
    for active in reversed(undone):
        active.restore()
    problems = []
    if len(undone) > 1:
        problems.append(
            f"it was exited before the edits entered after it ({len(undone) - 1} still active); exit nested edits "
            "newest first, as nested `with` blocks do. Those edits were undone too"
        )
    if any(active.moved() for active in undone):
        problems.append(
            f"the model's dtype or device changed inside it, from {edit.placement} to {_placement(edit.slots)}; "
            "cast or move the model before entering an edit or after leaving it"
        )
    if problems:
        raise EditError(
            "An edit was misused: "
            + "; ".join(problems)
            + ". Every touched weight holds its value from before the edit again (in the current dtype and device)."
        )


def random_derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return a uniformly random permutation of `0..n-1` with no fixed point (n >= 2), by rejection."""
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def exchange_pairs(
    model: AnyGPT2,
    heads: list,
    kind: str = "shuffle",
    rng: np.random.Generator | int | None = None,
    pool: list | None = None,
) -> list[list[list[int]]]:
    """Return `[[target, source], ...]`: which head's component each head of `heads` receives under `kind`.

    "shuffle": a random derangement within `heads` (every head gets another one's component).
    "random baseline": random heads from `pool` minus `heads` (default: every other head), distinct when the
    pool is large enough, else drawn with replacement (with a warning). "original": no pairs. (The reference
    drew from layers 1..L-2 only; pass that as `pool` to do the same.)
    """
    if kind not in EXCHANGE_KINDS:
        raise IHLibError(f"kind must be one of {EXCHANGE_KINDS}, got {kind!r}.")
    targets = model_heads(model, heads)
    rng = np.random.default_rng(rng)
    if kind == "original":
        return []
    if kind == "shuffle":
        if len(targets) < 2:
            raise IHLibError(f"Shuffling needs at least 2 heads, got {len(targets)}.")
        sources = [targets[j] for j in random_derangement(len(targets), rng)]
    else:
        candidates = random_candidates(model, targets, pool)
        replace = len(candidates) < len(targets)
        if replace:
            warnings.warn(
                f"Only {len(candidates)} heads lie outside the {len(targets)} edited ones: the random baseline "
                "draws them with replacement.",
                stacklevel=2,
            )
        sources = [candidates[j] for j in rng.choice(len(candidates), size=len(targets), replace=replace)]
    return [[target, source] for target, source in zip(targets, sources, strict=True)]


def random_candidates(model: AnyGPT2, heads: list, pool: list | None) -> list[list[int]]:
    """Return the heads of `pool` (default: all heads of the model) outside `heads`; raise if there are none."""
    if pool is None:
        pool = all_heads((model.config.n_layer, model.config.n_head))
    targets = model_heads(model, heads)
    candidates = [pair for pair in model_heads(model, pool, "pool") if pair not in targets]
    if not candidates:
        raise IHLibError("The random baseline needs heads outside the edited set, but the pool has none.")
    return candidates


@contextmanager
def exchange_edit(
    model: AnyGPT2,
    heads: list,
    component: str = "QK",
    kind: str = "shuffle",
    rng: np.random.Generator | int | None = None,
    pool: list | None = None,
) -> Iterator[list[list[list[int]]]]:
    """Inside the block each head of `heads` carries another head's QK or OV component; yields `[target, source]` pairs.

    Only the heads in `heads` change: sources are read from a snapshot, so "shuffle" permutes the set
    among itself and "random baseline" copies components of random heads outside it into it (see
    `exchange_pairs`). Everything touched is restored bitwise on exit.
    """
    check_component(component)
    with pairs_edit(model, exchange_pairs(model, heads, kind, rng, pool), component) as pairs:
        yield pairs


@contextmanager
def projection_edit(
    model: AnyGPT2,
    heads: list,
    P: torch.Tensor | np.ndarray,
    component: str = "QK",
) -> Iterator[None]:
    """Inside the block `W_k <- P W_k` (QK: keys read `P x`) or `W_o <- P W_o` (OV: the head writes into `P`'s range).

    `P` is `(d_model, d_model)` (e.g. `I - V V^T` or `V V^T`); `W_k`, `W_o` are the `(d_model, d_head)`
    column-convention maps of each head in `heads`. Biases are left as they are. Restored bitwise on exit.
    """
    check_component(component)
    pairs = model_heads(model, heads)
    d_model = model.config.n_embd
    if tuple(P.shape) != (d_model, d_model):
        raise IHLibError(f"P must have shape ({d_model}, {d_model}) for this model, got {tuple(P.shape)}.")
    if component == "QK":
        slots = [_qkv_columns(model, layer, head, "k")[0] for layer, head in pairs]
    else:
        slots = [_output_rows(model, layer, head) for layer, head in pairs]
    P = torch.as_tensor(P)
    with restored_on_exit(model, slots):
        with torch.no_grad():
            for view in (slot.view() for slot in slots):
                P_view = P.to(view)
                view.copy_(P_view @ view if component == "QK" else view @ P_view.T)
        yield


@contextmanager
def pairs_edit(model: AnyGPT2, pairs: list, component: str) -> Iterator[list]:
    """Inside the block each `target` of `pairs` `[[target, source], ...]` carries `source`'s component.

    Sources are read from a snapshot taken before any write; everything touched is restored bitwise on exit.
    """
    sources = [[view.clone() for view in component_views(model, *source, component)] for _, source in pairs]
    targets = [component_slots(model, *target, component) for target, _ in pairs]
    with restored_on_exit(model, [slot for slots in targets for slot in slots]):
        with torch.no_grad():
            for target_slots, source_values in zip(targets, sources, strict=True):
                for slot, value in zip(target_slots, source_values, strict=True):
                    slot.view().copy_(value)
        yield pairs


def cross_layer_possible(heads: list) -> bool:
    """True when `heads` can be deranged so that every head receives from another layer (no layer holds > half)."""
    layers = [h[0] for h in heads]
    return len(set(layers)) > 1 and max(layers.count(layer) for layer in set(layers)) * 2 <= len(layers)


def cross_layer_pairs(heads: list, rng: np.random.Generator) -> list[list[list[int]]]:
    """A random derangement `[[target, source], ...]` of `heads` where every source sits in another layer.

    Heads are grouped by layer (layers and heads within them in random order) and each receives from the head
    `m` places further round, `m` the largest group: no group is longer than `m`, so none receives from itself.
    Needs `cross_layer_possible(heads)`.
    """
    if not cross_layer_possible(heads):
        raise IHLibError("A cross-layer shuffle needs heads in several layers, none holding more than half of them.")
    layers = sorted({h[0] for h in heads})
    order = [list(h) for layer in rng.permutation(layers) for h in rng.permutation([h for h in heads if h[0] == layer])]
    m = max(sum(h[0] == layer for h in heads) for layer in layers)
    return [[order[i], order[(i + m) % len(order)]] for i in range(len(order))]
