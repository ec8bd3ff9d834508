"""The weight circuit through an MLP: each earlier head's output map `W_o` followed by the MLP's averaged Jacobian.

`Jbar` is the Jacobian of `x -> mlp_l(ln_2(x))` `(d_model, d_model)` (column convention, `x` the residual entering
MLP `l`) averaged over the positions of a batch (position 0, the attention sink, left out). With the layer norm's
Jacobian `diag(g) / s (I - 11^T/d - xh xh^T/d)` (`xh` the normalised input, `s` its scale) and the MLP's
`W_proj^T diag(act'(h)) W_fc^T`, the product `Jbar W_o` comes from two matrix products over the positions, without
forming a Jacobian per position. The query side can go through the same MLP: a later head's query reads the token
with the MLP's (linearised) contribution, `(I + Jbar) x`. Weights are read, never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ihlib.model.errors import ParameterError
from ihlib.model.loading import AnyGPT2, transformer_of
from ihlib.model.validation import integer
from ihlib.model.weights import O, Q, check_w_all


def mlp_inputs(model: AnyGPT2, layer: int, input_ids: torch.Tensor) -> torch.Tensor:
    """The residual entering MLP `layer` (before `ln_2`) at every position but the first: `(batch * (seq - 1), d)`."""
    block = transformer_of(model).h[layer]
    captured: list[torch.Tensor] = []
    handle = block.ln_2.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            transformer_of(model)(input_ids.to(next(block.parameters()).device))
    finally:
        handle.remove()
    return captured[0][:, 1:].flatten(0, 1)


def averaged_jacobian_times(model: AnyGPT2, layer: int, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """`mean_p J_p @ maps` `(d, k)`: `J_p` the Jacobian of `mlp(ln_2(x))` at the rows `x (N, d)`, `maps (d, k)`."""
    block = transformer_of(model).h[layer]
    ln, mlp = block.ln_2, block.mlp
    x, maps = x.detach().double(), maps.detach().double().to(x.device)
    d = x.shape[-1]
    gain = ln.weight.detach().double()
    scale = (x.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()  # (N, 1)
    normalised = (x - x.mean(-1, keepdim=True)) / scale
    w_fc, w_proj = mlp.c_fc.weight.detach().double(), mlp.c_proj.weight.detach().double()  # (d, 4d), (4d, d)
    hidden = (
        ((normalised * gain + ln.bias.detach().double()) @ w_fc + mlp.c_fc.bias.detach().double())
        .detach()
        .requires_grad_(True)
    )
    with torch.enable_grad():
        slope = torch.autograd.grad(mlp.act(hidden).sum(), hidden)[0]  # act'(h), (N, 4d)
    weights = slope / scale  # (N, 4d)
    through = w_fc.T @ (gain[:, None] * maps)  # W_fc^T diag(g) maps, (4d, k)
    centring = (w_fc.T @ gain)[:, None] * maps.mean(0, keepdim=True)  # W_fc^T g (1^T maps / d), (4d, k)
    along_x = (weights * ((normalised * gain) @ w_fc)).T @ (normalised @ maps / d)  # (4d, k), summed over positions
    inner = weights.mean(0)[:, None] * (through - centring) - along_x / x.shape[0]
    return w_proj.T @ inner


KeyRoute = Literal["direct", "mlp", "both"]
KEY_ROUTES: tuple[str, ...] = ("direct", "mlp", "both")


@dataclass(frozen=True)
class RouteWeights:
    """`W_all` rewritten for one route through MLP `mlp_layer`: the output map of every head that feeds the MLP is
    `W_o` ("direct"), `Jbar W_o` ("mlp") or `(I + Jbar) W_o` ("both"); with `query_through_mlp` every head after the
    MLP reads its query through it, `W_q <- (I + Jbar)^T W_q`. `feeds`, `reads (n_layer, n_head)` mark the heads
    whose `W_o`, `W_q` were replaced."""

    W_all: torch.Tensor
    mlp_layer: int
    key_route: str
    query_through_mlp: bool
    feeds: np.ndarray
    reads: np.ndarray
    n_positions: int

    def record(self) -> dict:
        """JSON-friendly description of the route the weights stand for."""
        return {
            "mlp_layer": self.mlp_layer,
            "key_route": self.key_route,
            "query_through_mlp": self.query_through_mlp,
            "output_maps_replaced": int(self.feeds.sum()),
            "query_maps_replaced": int(self.reads.sum()),
            "n_positions": self.n_positions,
        }


def mlp_route_weights(
    model: AnyGPT2,
    W_all: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    mlp_layer: int = 0,
    key_route: KeyRoute = "mlp",
    query_through_mlp: bool = True,
) -> RouteWeights:
    """`W_all (n_layer, n_head, 4, d_model, d_head)` rewritten for a route through MLP `mlp_layer` (`RouteWeights`),
    `Jbar` averaged over the positions of `input_ids (batch, seq)` but the first. One forward; weights untouched."""
    check_w_all(W_all)
    n_layer, n_head, _, d_model, _ = W_all.shape
    mlp_layer = integer(mlp_layer, "mlp_layer", low=0, high=n_layer - 1)
    if key_route not in KEY_ROUTES:
        raise ParameterError(f"key_route must be one of {KEY_ROUTES}, got {key_route!r}.")
    x = mlp_inputs(model, mlp_layer, input_ids)
    jacobian = averaged_jacobian_times(model, mlp_layer, x, torch.eye(d_model, dtype=torch.float64))
    jacobian = jacobian.cpu()
    out = W_all.detach().clone().cpu()
    feeds = np.zeros((n_layer, n_head), dtype=bool)
    reads = np.zeros((n_layer, n_head), dtype=bool)
    output_map = {"direct": torch.eye(d_model), "mlp": jacobian, "both": torch.eye(d_model) + jacobian}[key_route]
    for layer in range(n_layer):
        for head in range(n_head):
            if layer <= mlp_layer and key_route != "direct":
                out[layer, head, O] = (output_map.double() @ out[layer, head, O].double()).to(out.dtype)
                feeds[layer, head] = True
            if layer > mlp_layer and query_through_mlp:
                query_map = (torch.eye(d_model, dtype=torch.float64) + jacobian).T
                out[layer, head, Q] = (query_map @ out[layer, head, Q].double()).to(out.dtype)
                reads[layer, head] = True
    return RouteWeights(out, mlp_layer, key_route, query_through_mlp, feeds, reads, int(x.shape[0]))
