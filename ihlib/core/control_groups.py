"""Control groups of head pairs for the weight claims (1 and 2): controls that differ in one thing only.

A group is a grid of reading heads (rows: the QK / key side) by writing heads (columns: the OV / output
side) with a mask of the pairs that count. Groups of a cross comparison (IH x SH):

- "listed": the IHs by the shifting heads, pairs that can compose (writing head in an earlier layer);
- "random composable": every pair of heads outside `exclude` that can compose (`sampled_group` bounds it);
- "same layers": heads outside `exclude` in the IHs' layers by heads outside `exclude` in the shifting
  heads' layers, pairs that can compose (absent when those layers hold no other head);
- "specificity": the IHs by the heads of the shifting heads' layers that are not shifting heads (outside
  `exclude`), pairs that can compose.

Groups of a comparison of one kind with itself (IH x IH, SH x SH) hold each pair of distinct heads once:
"listed", "random" (heads outside `exclude`) and "same layers" (heads outside `exclude` in the listed layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ihlib.model.head_ids import all_heads, head_labels

CROSS_GROUPS = ("listed", "random composable", "same layers", "specificity")
SELF_GROUPS = ("listed", "random", "same layers")


@dataclass(frozen=True)
class PairGroup:
    """Pairs `rows[i] x cols[j]` where `mask[i, j]`; `symmetric` groups pair one set of heads with itself."""

    name: str
    rows: list[list[int]]
    cols: list[list[int]]
    mask: np.ndarray
    symmetric: bool
    note: str

    @property
    def n_pairs(self) -> int:
        """Number of distinct pairs (each unordered pair once when symmetric)."""
        count = int(self.mask.sum())
        return count // 2 if self.symmetric else count

    @property
    def exists(self) -> bool:
        """True when the group holds at least one pair."""
        return self.n_pairs > 0

    def pairs(self) -> list[tuple[list[int], list[int]]]:
        """The distinct `(row head, column head)` pairs (upper triangle when symmetric)."""
        mask = np.triu(self.mask, 1) if self.symmetric else self.mask
        return [(self.rows[i], self.cols[j]) for i, j in zip(*np.nonzero(mask), strict=True)]

    def record(self) -> dict:
        """JSON-friendly description: name, heads per side, number of pairs, note."""
        return {
            "name": self.name,
            "rows": head_labels(self.rows),
            "cols": head_labels(self.cols),
            "n_pairs": self.n_pairs,
            "note": self.note,
        }


def composable(rows: list, cols: list) -> np.ndarray:
    """Mask `(len(rows), len(cols))`: True where the column (writing) head is in an earlier layer than the row head."""
    row_layers = np.array([layer for layer, _ in rows], dtype=int).reshape(-1, 1)
    col_layers = np.array([layer for layer, _ in cols], dtype=int).reshape(1, -1)
    return col_layers < row_layers


def _outside(heads: list, exclude: list) -> list[list[int]]:
    """Heads of `heads` not in `exclude`, in order."""
    return [list(h) for h in heads if list(h) not in exclude]


def _in_layers(heads: list, layers: set[int]) -> list[list[int]]:
    """Heads of `heads` whose layer is in `layers`."""
    return [h for h in heads if h[0] in layers]


def _layer_names(heads: list) -> str:
    """The layers of `heads` as "1" or "0, 2"."""
    return ", ".join(str(layer) for layer in sorted({h[0] for h in heads}))


def _cross(name: str, rows: list, cols: list, note: str) -> PairGroup:
    """A cross group with the composable mask."""
    mask = composable(rows, cols) if rows and cols else np.zeros((len(rows), len(cols)), dtype=bool)
    return PairGroup(name, rows, cols, mask, False, note)


def _self(name: str, heads: list, note: str) -> PairGroup:
    """A symmetric group: every pair of distinct heads of `heads`."""
    mask = ~np.eye(len(heads), dtype=bool)
    return PairGroup(name, heads, heads, mask, True, note)


def cross_groups(shape: tuple[int, int], IH_list: list, Shifting_list: list, exclude: list) -> dict[str, PairGroup]:
    """The four groups of an IH x SH comparison (module docstring); `exclude` lists heads no control may use."""
    exclude = [list(h) for h in exclude] + [list(h) for h in IH_list + Shifting_list]
    others = _outside(all_heads(shape), exclude)
    ih_layers, sh_layers = {h[0] for h in IH_list}, {h[0] for h in Shifting_list}
    same_rows, same_cols = _in_layers(others, ih_layers), _in_layers(others, sh_layers)
    groups = {
        "listed": _cross("listed", IH_list, Shifting_list, "listed IHs x listed shifting heads, composable pairs"),
        "random composable": _cross(
            "random composable", others, others, f"all composable pairs of the {len(others)} heads outside the lists"
        ),
        "same layers": _cross(
            "same layers",
            same_rows,
            same_cols,
            f"other heads of the IHs' layer(s) {_layer_names(IH_list)} x other heads of the shifting heads' "
            f"layer(s) {_layer_names(Shifting_list)}",
        ),
        "specificity": _cross(
            "specificity",
            IH_list,
            same_cols,
            f"listed IHs x the heads of layer(s) {_layer_names(Shifting_list)} that are not shifting heads",
        ),
    }
    return {name: _explained(group, IH_list, Shifting_list) for name, group in groups.items()}


def self_groups(shape: tuple[int, int], heads: list, exclude: list, kind: str) -> dict[str, PairGroup]:
    """The three groups of a comparison of one kind with itself (IH x IH, SH x SH); `kind` names the heads."""
    exclude = [list(h) for h in exclude] + [list(h) for h in heads]
    others = _outside(all_heads(shape), exclude)
    same = _in_layers(others, {h[0] for h in heads})
    groups = {
        "listed": _self("listed", heads, f"pairs of distinct listed {kind} heads"),
        "random": _self("random", others, f"pairs of distinct heads among the {len(others)} heads outside the lists"),
        "same layers": _self("same layers", same, f"pairs of the other heads of layer(s) {_layer_names(heads)}"),
    }
    for name in ("random", "same layers"):
        if not groups[name].exists:
            groups[name] = _absent(groups[name], f"fewer than 2 heads outside the lists in {_scope(name, heads)}")
    return groups


def _scope(name: str, heads: list) -> str:
    """Where a group looks for heads, in words."""
    return "the model" if name == "random" else f"layer(s) {_layer_names(heads)}"


def _absent(group: PairGroup, why: str) -> PairGroup:
    """The same empty group with a note saying plainly why it does not exist on this model."""
    return PairGroup(group.name, group.rows, group.cols, group.mask, group.symmetric, f"does not exist: {why}")


def _explained(group: PairGroup, IH_list: list, Shifting_list: list) -> PairGroup:
    """Replace the note of an empty cross group by the reason it is empty."""
    if group.exists:
        return group
    if group.name == "listed":
        why = "no listed shifting head sits in an earlier layer than a listed IH"
    elif not group.rows:
        why = f"every head of the IHs' layer(s) {_layer_names(IH_list)} is listed or excluded"
    elif not group.cols:
        why = f"every head of the shifting heads' layer(s) {_layer_names(Shifting_list)} is listed or excluded"
    else:
        why = "no pair of these heads can compose (no writing head in an earlier layer)"
    return _absent(group, why)


def sampled_group(group: PairGroup, max_pairs: int | None, rng: np.random.Generator) -> PairGroup:
    """`group` with at most `max_pairs` of its pairs kept (drawn by `rng` without replacement; all when None or when
    it holds no more); the note says how many of how many. Symmetric groups keep both orders of a kept pair."""
    if max_pairs is None or group.n_pairs <= max_pairs:
        return group
    rows, cols = np.nonzero(np.triu(group.mask, 1) if group.symmetric else group.mask)
    chosen = rng.choice(len(rows), size=max_pairs, replace=False)
    mask = np.zeros_like(group.mask)
    mask[rows[chosen], cols[chosen]] = True
    if group.symmetric:
        mask |= mask.T
    note = f"{max_pairs} of the {group.n_pairs} pairs, drawn without replacement: {group.note}"
    return PairGroup(group.name, group.rows, group.cols, mask, group.symmetric, note)


def draw_pairs(group: PairGroup, num_samp: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Draw up to `num_samp` distinct pairs of `group` without replacement: `(N, 2, 2)` `[row head, column head]`.

    Returns the pairs and a description of the pool (all its pairs when it holds `num_samp` or fewer).
    """
    pairs = np.array(group.pairs(), dtype=int).reshape(-1, 2, 2)
    if len(pairs) <= num_samp:
        return pairs, f"all {len(pairs)} {group.name} pairs ({group.note})"
    chosen = np.sort(rng.choice(len(pairs), size=num_samp, replace=False))
    return pairs[chosen], f"{num_samp} of the {len(pairs)} {group.name} pairs ({group.note}), without replacement"
