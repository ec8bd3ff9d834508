"""Path patching: remove one route's contribution from chosen inputs of chosen readers only, one forward per condition.

The residual a block reads is a sum of parts, `x = e + sum_h c_h + sum_l m_l` (biases aside), `(batch, seq, d_model)`:
`c_h` is head h's direct write (its slice of `attn.c_proj`'s input times its rows of `c_proj.weight`, no bias) and
`m_l` MLP l's output. A condition removes routes from the readers only; each route has an *ablated value*:
- a head's write: the per-position mean of `c_h` over the batch ("mean") or 0 ("zero");
- an MLP's output: the per-position mean of `m_l`, or 0;
- the part of MLP l that depends on heads S: the MLP recomputed on `x_pre - sum_S (c_h - mean c_h)` (zero:
  `x_pre - sum_S c_h`), `x_pre` the residual entering MLP l; the part removed is the difference to `m_l(x_pre)`.
A reader reads `x + sum_routes (ablated - value)`, every other input reads the unedited `x` of the same forward.
A route reaches only readers after it: a head of layer l reaches MLP l and later layers, MLP l later layers, and
every route reaches the unembedding. Means are over the batch itself, recorded by the unedited forward, which is
condition 0: a run costs `1 + n_conditions` batched forwards, weights untouched, no reload (hooks only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch

from ihlib.model.errors import HeadError, ParameterError
from ihlib.model.head_ids import head_label
from ihlib.model.loading import AnyGPT2, transformer_of
from ihlib.model.validation import integer

RouteKind = Literal["head", "mlp", "mlp_part"]
AblationKind = Literal["mean", "zero"]
HEAD_INPUTS = ("q", "k", "v")
Pair = tuple[int, int]


@dataclass(frozen=True)
class Route:
    """One sender: a head's direct write (`head`), an MLP's output (`mlp`), or the part of MLP `layer` that depends
    on the heads `via` (`mlp_part`)."""

    kind: RouteKind
    layer: int
    head: int | None = None
    via: tuple[Pair, ...] = ()

    @classmethod
    def head_write(cls, layer: int, head: int) -> Route:
        """The direct write of head `(layer, head)`."""
        return cls("head", int(layer), int(head))

    @classmethod
    def mlp_output(cls, layer: int) -> Route:
        """The whole output of MLP `layer`."""
        return cls("mlp", int(layer))

    @classmethod
    def mlp_part(cls, layer: int, heads: Sequence[Sequence[int]]) -> Route:
        """The part of MLP `layer`'s output that depends on `heads` (each in layer `layer` or earlier)."""
        return cls("mlp_part", int(layer), via=tuple((int(l), int(h)) for l, h in heads))

    @property
    def name(self) -> str:
        """`L0H1`, `MLP0` or `MLP0 via L0H0+L0H1`."""
        if self.kind == "head":
            return head_label(self.layer, self.head)
        if self.kind == "mlp":
            return f"MLP{self.layer}"
        return f"MLP{self.layer} via " + "+".join(head_label(*pair) for pair in self.via)

    def reaches_head_in(self, layer: int) -> bool:
        """True when this route is written before the attention of `layer` reads the residual."""
        return layer > self.layer

    def reaches_mlp_in(self, layer: int) -> bool:
        """True when this route is written before MLP `layer` reads the residual (a head's own layer counts)."""
        return layer >= self.layer if self.kind == "head" else layer > self.layer

    def check(self, shape: tuple[int, int]) -> None:
        """Raise `HeadError` / `ParameterError` when a layer or head is outside the model's `(n_layer, n_head)`."""
        n_layer, n_head = shape
        integer(self.layer, f"layer of route {self.name}", low=0, high=n_layer - 1)
        heads = [(self.layer, self.head)] if self.kind == "head" else list(self.via)
        if self.kind == "mlp_part" and not heads:
            raise ParameterError(f"Route {self.name}: name the heads the MLP part depends on (via=[(layer, head)]).")
        for layer, head in heads:
            if not (0 <= layer <= self.layer and 0 <= head < n_head):
                raise HeadError(
                    f"Route {self.name}: head L{layer}H{head} must lie in layers 0..{self.layer} "
                    f"and heads 0..{n_head - 1}."
                )


@dataclass(frozen=True)
class Readers:
    """Where routes are removed: the `inputs` ("q", "k", "v") of `heads`, the input of MLPs `mlps`, the unembedding."""

    heads: tuple[Pair, ...] = ()
    inputs: tuple[str, ...] = ("k",)
    mlps: tuple[int, ...] = ()
    unembedding: bool = False

    def check(self, shape: tuple[int, int]) -> None:
        """Raise when an input is not q/k/v or a head or layer is outside the model's `(n_layer, n_head)`."""
        if not set(self.inputs) <= set(HEAD_INPUTS) or not self.inputs:
            raise ParameterError(f"inputs must be a non-empty subset of {HEAD_INPUTS}, got {self.inputs!r}.")
        for layer, head in self.heads:
            if not (0 <= layer < shape[0] and 0 <= head < shape[1]):
                raise HeadError(f"reader L{layer}H{head} is outside the model's {shape[0]} layers x {shape[1]} heads.")
        for layer in self.mlps:
            integer(layer, "MLP reader layer", low=0, high=shape[0] - 1)


@dataclass(frozen=True)
class PathCondition:
    """Routes removed together from the readers; no routes is the unedited model."""

    routes: tuple[Route, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        """`label`, or the routes' names joined by " + ", or "nothing"."""
        return self.label or (" + ".join(route.name for route in self.routes) or "nothing")


@dataclass
class RouteMeans:
    """Per-position means over the batch of the head writes `(seq, d_model)` and MLP outputs the routes need."""

    heads: dict[Pair, torch.Tensor] = field(default_factory=dict)
    mlps: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class PatchedForward:
    """One forward: the final residual after `ln_f` `(batch, seq, d_model)` and attention `(n_layer, batch, n_head,
    seq, seq)`; `means` filled when the forward recorded them."""

    hidden: torch.Tensor
    attention: torch.Tensor
    means: RouteMeans


class _State:
    """What one forward's hooks share: each route's edit `(batch, seq, d_model)`, head writes, block inputs; when
    recording, the means are this batch's, filled in as the forward reaches each sender."""

    def __init__(self, routes: Sequence[Route], kind: AblationKind, means: RouteMeans | None, record: bool):
        self.routes, self.kind, self.record = list(routes), kind, record
        self.means = RouteMeans() if record else means
        self.edits: dict[Route, torch.Tensor] = {}
        self.writes: dict[Pair, torch.Tensor] = {}
        self.block_input: dict[tuple[str, int], torch.Tensor] = {}

    def ablated_write(self, pair: Pair) -> torch.Tensor:
        """The ablated value of head `pair`'s write: its batch mean per position, or zeros."""
        write = self.writes[pair]
        if self.kind == "zero":
            return torch.zeros_like(write)
        return self.means.heads[pair][: write.shape[1]].to(write).expand_as(write)

    def edit_for_head_in(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        """Sum of the edits of the routes that reach the attention of `layer`."""
        return sum((e for r, e in self.edits.items() if r.reaches_head_in(layer)), torch.zeros_like(like))

    def edit_for_mlp_in(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        """Sum of the edits of the routes that reach MLP `layer`."""
        return sum((e for r, e in self.edits.items() if r.reaches_mlp_in(layer)), torch.zeros_like(like))


def _head_writes_hook(state: _State, layer: int, heads: list[int], w_proj: torch.Tensor, n_head: int):
    """Pre-hook on `attn.c_proj`: store each head's write `z_h W_O[h]` `(batch, seq, d_model)`, its mean when
    recording, and the edit of each head-write route of this layer."""

    def hook(module: torch.nn.Module, args: tuple) -> None:
        z = args[0].unflatten(-1, (n_head, -1))  # (batch, seq, n_head, d_head)
        rows = w_proj.unflatten(0, (n_head, -1))  # (n_head, d_head, d_model)
        for head in heads:
            write = z[:, :, head] @ rows[head]
            state.writes[(layer, head)] = write
            if state.record:
                state.means.heads[(layer, head)] = write.mean(0)
        for route in state.routes:
            if route.kind == "head" and route.layer == layer:
                pair = (layer, route.head)
                state.edits[route] = state.ablated_write(pair) - state.writes[pair]

    return hook


def _mlp_hook(state: _State, layer: int, block: torch.nn.Module):
    """Forward hook on `mlp` of `layer`: record its mean output and store the edits of the routes of this MLP."""

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        if state.record:
            state.means.mlps[layer] = output.mean(0)
        for route in state.routes:
            if route.layer != layer or route.kind == "head":
                continue
            if route.kind == "mlp":
                mean = state.means.mlps[layer][: output.shape[1]].to(output) if state.kind == "mean" else 0.0
                state.edits[route] = mean - output
            else:
                x_pre = state.block_input[("mlp", layer)]
                removed = sum(state.writes[pair] - state.ablated_write(pair) for pair in route.via)
                state.edits[route] = block.mlp.forward(block.ln_2.forward(x_pre - removed)) - output

    return hook


def _mlp_input_hook(state: _State, layer: int, is_reader: bool):
    """Pre-hook on `ln_2` of `layer`: edit the MLP's input when it is a reader; keep it for the MLP-part routes."""

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        if is_reader:
            x = x + state.edit_for_mlp_in(layer, x)
        state.block_input[("mlp", layer)] = x
        return (x,)

    return hook


def _block_input_hook(state: _State, layer: int):
    """Pre-hook on `ln_1` of `layer`: keep the residual the attention reads."""

    def hook(module: torch.nn.Module, args: tuple) -> None:
        state.block_input[("attn", layer)] = args[0]

    return hook


def _qkv_hook(state: _State, layer: int, block: torch.nn.Module, columns: torch.Tensor):
    """Forward hook on `attn.c_attn` of `layer`: recompute the reader `columns` of q|k|v from the edited residual."""

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = state.block_input[("attn", layer)]
        edit = state.edit_for_head_in(layer, x)
        edited = block.ln_1.forward(x + edit)
        out = output.clone()
        out[..., columns] = edited @ module.weight[:, columns] + module.bias[columns]
        return out

    return hook


def _final_hook(state: _State):
    """Pre-hook on `ln_f`: the unembedding reads the residual with every route's edit."""

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (x + sum(state.edits.values(), torch.zeros_like(x)),)

    return hook


def reader_columns(heads: Sequence[Pair], inputs: Sequence[str], n_head: int, d_head: int) -> dict[int, torch.Tensor]:
    """Columns of `c_attn`'s output `(.., 3 * d_model)` that each layer's reader heads take as `inputs`."""
    d_model = n_head * d_head
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        for name in inputs:
            start = HEAD_INPUTS.index(name) * d_model + head * d_head
            by_layer.setdefault(layer, []).extend(range(start, start + d_head))
    return {layer: torch.tensor(sorted(cols)) for layer, cols in by_layer.items()}


@contextmanager
def _patching_hooks(model: AnyGPT2, state: _State, readers: Readers) -> Iterator[None]:
    """Install the hooks of one patched forward; remove them all afterwards, also on error."""
    body, config = transformer_of(model), model.config
    n_head = config.n_head
    sender_heads: dict[int, set[int]] = {}
    for route in state.routes:
        for layer, head in [(route.layer, route.head)] if route.kind == "head" else route.via:
            sender_heads.setdefault(layer, set()).add(head)
    part_layers = {route.layer for route in state.routes if route.kind == "mlp_part"}
    mlp_layers = {route.layer for route in state.routes if route.kind != "head"} | set(readers.mlps)
    columns = reader_columns(readers.heads, readers.inputs, n_head, config.n_embd // n_head)
    with ExitStack() as stack:
        for layer, block in enumerate(body.h):
            handles = []
            if layer in sender_heads:
                hook = _head_writes_hook(state, layer, sorted(sender_heads[layer]), block.attn.c_proj.weight, n_head)
                handles.append(block.attn.c_proj.register_forward_pre_hook(hook))
            if layer in columns:
                handles.append(block.ln_1.register_forward_pre_hook(_block_input_hook(state, layer)))
                handles.append(block.attn.c_attn.register_forward_hook(_qkv_hook(state, layer, block, columns[layer])))
            if layer in mlp_layers or layer in part_layers:
                hook = _mlp_input_hook(state, layer, layer in readers.mlps)
                handles.append(block.ln_2.register_forward_pre_hook(hook))
                handles.append(block.mlp.register_forward_hook(_mlp_hook(state, layer, block)))
            for handle in handles:
                stack.callback(handle.remove)
        if readers.unembedding:
            stack.callback(body.ln_f.register_forward_pre_hook(_final_hook(state)).remove)
        yield


def patched_forward(
    model: AnyGPT2,
    input_ids: torch.Tensor,
    routes: Sequence[Route] = (),
    readers: Readers = Readers(),
    *,
    kind: AblationKind = "mean",
    means: RouteMeans | None = None,
) -> PatchedForward:
    """One batched forward of `input_ids (batch, seq)` with `routes` removed from `readers`.

    Mean ablation uses `means` (`.means` of an unedited forward with the same routes); without them an unedited
    forward on this batch records them first (per position, over the batch), so the call costs two forwards.
    """
    check_patching(model, routes, readers, kind)
    if means is None:
        means = run_forward(model, input_ids, routes, Readers(), kind, None).means if kind == "mean" else RouteMeans()
    return run_forward(model, input_ids, routes, readers, kind, means)


def check_patching(model: AnyGPT2, routes: Sequence[Route], readers: Readers, kind: str) -> None:
    """Raise a `ParameterError` (or `HeadError`) when a route, a reader or `kind` does not fit `model`."""
    shape = (model.config.n_layer, model.config.n_head)
    for route in routes:
        route.check(shape)
    readers.check(shape)
    if kind not in ("mean", "zero"):
        raise ParameterError(f"kind must be 'mean' or 'zero', got {kind!r}.")


def run_forward(
    model: AnyGPT2,
    input_ids: torch.Tensor,
    routes: Sequence[Route],
    readers: Readers,
    kind: AblationKind,
    means: RouteMeans | None,
) -> PatchedForward:
    """Run the hooked forward; without `means` it records them (and edits with this batch's own means)."""
    body = transformer_of(model)
    state = _State(routes, kind, means, record=means is None)
    with torch.no_grad(), _patching_hooks(model, state, readers):
        out = body(input_ids.to(next(body.parameters()).device), output_attentions=True)
    if out.attentions is None or out.attentions[0] is None:
        raise ParameterError("The model returned no attention weights: load it with attn_implementation='eager'.")
    return PatchedForward(out.last_hidden_state, torch.stack(out.attentions), state.means)
