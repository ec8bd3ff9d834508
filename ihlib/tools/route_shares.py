"""Which route carries the previous token into the induction heads' keys: route shares with intervals.

Three path-patching conditions on the IHs' keys (`ihlib.tools.routes.path_patching`): the shifting heads' direct
writes removed (`d`), the shifting-head-dependent part of every MLP between them and the IHs removed (`m`), both
removed (`b`). A drop is a share of what there is to lose: of an IH's induction score above the uniform-attention
head's, `(S_nothing - S_condition) / (S_nothing - S_uniform)`, and of copying, `(err_condition - err_nothing) /
(chance - err_nothing)`. Two routes that overlap are split symmetrically (Shapley values of the two): direct
`(d + b - m) / 2`, through the MLPs `(m + b - d) / 2`; they add up to `b`, and the rest, `1 - b`, is what neither
route carries. Intervals: 95% percentiles over `n_boot` resamples of the sequences, the same for every condition.
Cost: `1 + n_conditions` forwards per receiver group (each IH layer alone for the induction shares, so that an
edit of an earlier IH layer does not reach a later one, and every IH together for copying).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ihlib.core.mlp_route import RouteWeights, mlp_route_weights
from ihlib.core.stats import Interval
from ihlib.model.errors import HeadError
from ihlib.model.head_ids import head_label
from ihlib.model.loading import AnyGPT2, model_label
from ihlib.tools.path_patching import Pair, PathCondition, Route
from ihlib.tools.routes import PatchSettings, PathPatchingResult, path_patching

PARTS = ("shifting heads' direct write", "shifting-head part of the MLPs", "rest")
DIRECT, THROUGH_MLPS, BOTH = "direct", "through MLPs", "both"
CONDITIONS = (DIRECT, THROUGH_MLPS, BOTH)
DEFAULT_SETTINGS = PatchSettings()


def route_conditions(IH_list: Sequence[Sequence[int]], Shifting_list: Sequence[Sequence[int]]) -> list[PathCondition]:
    """Direct, each MLP's shifting-head part alone (when there are several), all of them, and both routes together.

    The MLPs are those of layers from the first shifting head's up to the last IH's (exclusive); each depends on the
    shifting heads of its layer and before.
    """
    shifting = [(int(layer), int(head)) for layer, head in Shifting_list]
    last_ih = max(int(layer) for layer, _ in IH_list)
    direct = tuple(Route.head_write(*pair) for pair in shifting)
    parts = tuple(
        Route.mlp_part(layer, [pair for pair in shifting if pair[0] <= layer])
        for layer in range(min(layer for layer, _ in shifting), last_ih)
    )
    singles = [PathCondition((part,), f"MLP{part.layer} part") for part in parts] if len(parts) > 1 else []
    return [
        PathCondition(direct, DIRECT),
        *singles,
        PathCondition(parts, THROUGH_MLPS),
        PathCondition(direct + parts, BOTH),
    ]


def shapley_shares(drops: dict[str, np.ndarray]) -> np.ndarray:
    """Shares `(..., 3)` (direct, through MLPs, rest) from the drops `d`, `m`, `b` of the three conditions."""
    d, m, b = drops[DIRECT], drops[THROUGH_MLPS], drops[BOTH]
    return np.stack([(d + b - m) / 2, (m + b - d) / 2, 1 - b], axis=-1)


def condition_index(result: PathPatchingResult, name: str) -> int:
    """Index of the condition called `name` in `result`."""
    return result.names.index(name)


def resampled_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means over the last axis `(batch,)` of `values`, first as given, then over `n_boot` resamples of it:
    `(..., 1 + n_boot)`; every leading entry uses the same resampled sequences."""
    batch = values.shape[-1]
    index = np.random.default_rng(seed).integers(batch, size=(n_boot, batch))
    return np.concatenate([values.mean(-1, keepdims=True), values[..., index].mean(-1)], axis=-1)


def intervals(samples: np.ndarray) -> np.ndarray:
    """`(..., 3)` mean, low, high from `(..., 1 + n_boot)` (the first entry the estimate, then resamples)."""
    low, high = np.nanpercentile(samples[..., 1:], [2.5, 97.5], axis=-1)
    return np.stack([samples[..., 0], low, high], axis=-1)


def induction_shares(result: PathPatchingResult, *, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares `(n_receivers, 3 parts, 3)` and drops `(n_receivers, 3 conditions, 3)` of each receiver's induction
    score above the uniform head's; the last axis is mean, low, high."""
    means = resampled_means(result.induction, n_boot, seed)  # (n_conditions, n_receivers, 1 + n_boot)
    nothing = means[0]
    span = nothing - result.uniform_induction
    drops = {name: nothing - means[condition_index(result, name)] for name in CONDITIONS}
    return shares_and_drops(drops, span)


def copying_shares(result: PathPatchingResult, *, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares `(3 parts, 3)` and drops `(3 conditions, 3)` of copying: of the top-1 error between the unedited
    model's and chance's; the last axis is mean, low, high."""
    errors = resampled_means(result.error, n_boot, seed)  # (n_conditions, 1 + n_boot)
    nothing = errors[0]
    drops = {name: errors[condition_index(result, name)] - nothing for name in CONDITIONS}
    return shares_and_drops(drops, result.chance_error - nothing)


def shares_and_drops(losses: dict[str, np.ndarray], span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapley shares and drops (each condition's loss over `span`, NaN where `span <= 0`), with intervals."""
    with np.errstate(invalid="ignore", divide="ignore"):
        span = np.where(span > 0, span, np.nan)
        drops = {name: loss / span for name, loss in losses.items()}
    stacked = np.stack([drops[name] for name in CONDITIONS], axis=-2)  # (..., 3 conditions, 1 + n_boot)
    return intervals(np.moveaxis(shapley_shares(drops), -1, -2)), intervals(stacked)


@dataclass(frozen=True)
class RouteAnalysis:
    """Route shares per IH and of copying, with the path-patching runs they come from.

    `induction_shares (n_IH, 3, 3)`: per IH (rows of `IH_list`) and part (`PARTS`) the mean, low, high;
    `copying_shares (3, 3)` the same for copying; `induction_drops (n_IH, 3, 3)` and `copying_drops (3, 3)` the
    share lost under each condition alone (`CONDITIONS`: direct, through MLPs, both). `together` edits every IH's
    keys at once (copying, and the figures to compare with other checks); `by_layer` edits one IH layer at a time
    (the induction shares; it is `(together,)` when every IH sits in one layer).
    """

    model: str
    IH_list: tuple[Pair, ...]
    Shifting_list: tuple[Pair, ...]
    induction_shares: np.ndarray
    copying_shares: np.ndarray
    induction_drops: np.ndarray
    copying_drops: np.ndarray
    together: PathPatchingResult
    by_layer: tuple[PathPatchingResult, ...]
    n_boot: int
    name = "route_analysis"

    @property
    def forwards(self) -> int:
        """Batched forwards the analysis took."""
        separate = [result for result in self.by_layer if result is not self.together]
        return self.together.forwards + sum(result.forwards for result in separate)

    def share(self, ih: int, part: int) -> Interval:
        """Share of IH number `ih` (in `IH_list`) carried by part `part` (`PARTS`)."""
        return Interval(*(float(v) for v in self.induction_shares[ih, part]))

    def copying_share(self, part: int) -> Interval:
        """Share of copying carried by part `part` (`PARTS`)."""
        return Interval(*(float(v) for v in self.copying_shares[part]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The shares, and per-sequence induction and error of the run with every IH edited at once."""
        return {
            "induction_shares": self.induction_shares,
            "copying_shares": self.copying_shares,
            "induction_drops": self.induction_drops,
            "copying_drops": self.copying_drops,
            "together_induction": self.together.induction,
            "together_error": self.together.error,
        }

    def record(self) -> dict:
        """JSON-friendly shares per IH and of copying (mean, low, high), the runs' conditions and the cost."""
        shares = {
            head_label(*pair): {part: self.induction_shares[i, j].tolist() for j, part in enumerate(PARTS)}
            for i, pair in enumerate(self.IH_list)
        }
        return {
            "model": self.model,
            "parts": list(PARTS),
            "induction_shares": shares,
            "copying_shares": {part: self.copying_shares[j].tolist() for j, part in enumerate(PARTS)},
            "induction_drops": {
                head_label(*pair): {name: self.induction_drops[i, j].tolist() for j, name in enumerate(CONDITIONS)}
                for i, pair in enumerate(self.IH_list)
            },
            "copying_drops": {name: self.copying_drops[j].tolist() for j, name in enumerate(CONDITIONS)},
            "together": self.together.record(),
            "by_layer": [result.record() for result in self.by_layer],
            "forwards": self.forwards,
            "n_boot": self.n_boot,
        }


def route_analysis(
    model: AnyGPT2,
    IH_list: Sequence[Sequence[int]],
    Shifting_list: Sequence[Sequence[int]],
    *,
    settings: PatchSettings = DEFAULT_SETTINGS,
    n_boot: int = 1000,
) -> RouteAnalysis:
    """Route shares of the IHs' induction (each IH layer's keys edited alone) and of copying (every IH's keys).

    Cost: `(1 + n_conditions) * (1 + n_IH_layers)` batched forwards (`route_conditions`), weights untouched.
    """
    IH = tuple((int(layer), int(head)) for layer, head in IH_list)
    shifting = tuple((int(layer), int(head)) for layer, head in Shifting_list)
    if not IH or not shifting:
        raise HeadError("route_analysis needs at least one induction head and one shifting head ([layer, head]).")
    if max(layer for layer, _ in IH) <= min(layer for layer, _ in shifting):
        raise HeadError(
            f"No induction head lies after a shifting head (IHs {list(IH)}, shifting heads {list(shifting)}): "
            "no route from one to the other exists to measure."
        )
    conditions = route_conditions(IH, shifting)
    together = path_patching(model, conditions, IH, settings=settings)
    layers = sorted({layer for layer, _ in IH})
    by_layer = tuple(
        path_patching(model, conditions, [pair for pair in IH if pair[0] == layer], settings=settings)
        for layer in layers
        if len(layers) > 1
    ) or (together,)
    rows = {pair: (k, j) for k, result in enumerate(by_layer) for j, pair in enumerate(result.receivers)}
    per_layer = [induction_shares(result, n_boot=n_boot, seed=settings.seed) for result in by_layer]
    shares, drops = (np.stack([per_layer[rows[pair][0]][which][rows[pair][1]] for pair in IH]) for which in (0, 1))
    copying, copying_drops = copying_shares(together, n_boot=n_boot, seed=settings.seed)
    return RouteAnalysis(
        model_label(model), IH, shifting, shares, copying, drops, copying_drops, together, by_layer, n_boot
    )


@dataclass(frozen=True)
class CarryingRoute:
    """The route that carries more of copying by its Shapley share (`route`: `DIRECT` or `THROUGH_MLPS`; a tie goes
    to `DIRECT`), both shares (mean, low, high), and `mlp_layer`: the MLP whose shifting-head part alone costs the
    most copying (the only one when a single MLP lies between the shifting heads and the IHs); `model` and the heads
    the analysis was run on; `alone`: the share of copying lost by each condition (`CONDITIONS`) on its own, which
    shows two redundant routes (each alone costs little, both together much)."""

    model: str
    route: str
    direct: Interval
    through_mlps: Interval
    mlp_layer: int
    IH_list: tuple[Pair, ...] = ()
    Shifting_list: tuple[Pair, ...] = ()
    alone: tuple[Interval, ...] = ()
    name = "carrying_route"

    @property
    def is_direct(self) -> bool:
        """True when the direct write carries at least as much copying as the MLPs: the route test is the direct one."""
        return self.route == DIRECT

    def arrays(self) -> dict[str, np.ndarray]:
        """The two shares `(2, 3)`: direct, through the MLPs; mean, low, high."""
        return {"shares": np.array([list(vars(self.direct).values()), list(vars(self.through_mlps).values())])}

    def record(self) -> dict:
        """JSON-friendly form."""
        return {
            "model": self.model,
            "route": self.route,
            "direct": vars(self.direct),
            "through_mlps": vars(self.through_mlps),
            "mlp_layer": self.mlp_layer,
            "IH_list": [list(pair) for pair in self.IH_list],
            "Shifting_list": [list(pair) for pair in self.Shifting_list],
            "alone": [vars(value) for value in self.alone],
        }


def costliest_mlp(analysis: RouteAnalysis) -> int:
    """The MLP layer whose shifting-head part alone raises the copy error most (`route_conditions`' "MLP{l} part"
    rows of the run with every IH edited); the first MLP after the earliest shifting head when there is one."""
    first = min(layer for layer, _ in analysis.Shifting_list)
    result = analysis.together
    singles = {int(name[3:].split()[0]): i for i, name in enumerate(result.names) if name.endswith(" part")}
    if not singles:
        return first
    return max(singles, key=lambda layer: (float(result.error[singles[layer]].mean()), -layer))


def carrying_route(analysis: RouteAnalysis) -> CarryingRoute:
    """Which route carries more of copying (`CarryingRoute`), from the Shapley shares of `analysis`."""
    direct, through = analysis.copying_share(0), analysis.copying_share(1)
    route = THROUGH_MLPS if through.mean > direct.mean else DIRECT
    layer = costliest_mlp(analysis)
    alone = tuple(Interval(*(float(v) for v in row)) for row in analysis.copying_drops)
    heads = analysis.IH_list, analysis.Shifting_list
    return CarryingRoute(analysis.model, route, direct, through, layer, *heads, alone)


def carrying_route_weights(
    model: AnyGPT2, W_all: torch.Tensor, input_ids: torch.Tensor, carrying: CarryingRoute
) -> RouteWeights:
    """`W_all (n_layer, n_head, 4, d_model, d_head)` read along the route that carries copying: unchanged when it is
    the direct write; through MLP `carrying.mlp_layer` (the shifting heads' `W_o` followed by its Jacobian averaged
    over `input_ids (batch, seq)`, the IHs' queries read through it too) when it is the MLPs. One forward."""
    if carrying.is_direct:
        return mlp_route_weights(model, W_all, input_ids, key_route="direct", query_through_mlp=False)
    return mlp_route_weights(model, W_all, input_ids, mlp_layer=carrying.mlp_layer, key_route="mlp")
