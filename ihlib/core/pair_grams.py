"""Weight-space products of many (QK head, OV head) pairs from per-head quantities computed once, batched over heads.

Column convention (DESIGN.md): `W_qk = W_q W_k^T`, `W_ov = W_o W_v^T`, both `d x d`. For a receiving head `r` and a
sending head `s`, the products every pair statistic needs are inner products of `d x d` matrices:

- "K": `||W_qk(r) W_ov(s)||_F^2 = <W_qk^T W_qk (r), W_ov W_ov^T (s)>`,
- "Q": `||W_qk(r)^T W_ov(s)||_F^2 = <W_qk W_qk^T (r), W_ov W_ov^T (s)>`,
- "V": `||W_ov(r) W_ov(s)||_F^2 = <W_ov^T W_ov (r), W_ov W_ov^T (s)>`,
- "trace": `trace(W_qk(r) W_ov(s)) = <W_qk^T (r), W_ov (s)>`.

Each symmetric `d x d` side is `X X^T` with a per-head `X (d, d_head)` (e.g. `X = W_k S` with `S S^T = W_q^T W_q`,
the `d_head x d_head` root taken in float64). Per pair this costs `d^2 / 2` multiply-adds (the upper triangle of a
symmetric matrix), against `d d_head^2` for the `d_head x d_head` core `X(r)^T X(s)`: about ten times less at
GPT-2's shapes (`d^2 / 2 = 294,912` against `3,145,728`; the trace, whose sides are not symmetric, takes `d^2`), and
forming the sides (`d^2 d_head / 2` per head) is shared by all of a head's pairs. The `d x d` sides are formed once
per head, a block of rows at a time (memory bound: `MEMORY_BYTES`), in the weights' dtype; the pairs' inner products
are matrix products over the heads that occur, grouped in bands of the receiving heads' layers, and summed across row
blocks in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihlib.model.errors import IHLibError
from ihlib.model.weights import K, O, Q, V

PRODUCTS = ("K", "Q", "V", "trace")
MEMORY_BYTES = 256 * 2**20  # bound on the row blocks of the d x d sides held at once
MIN_FILL = 0.6  # layers share one grid product while this share of its entries are pairs (see _receiver_layer_groups)
MAX_BLOCK_ROWS = 96  # at most this many rows per block: finer blocks skip more of the symmetric lower triangles


READER_FACTORS = {"K": (K, Q), "Q": (Q, K), "V": (V, O), "writer": (O, V)}  # X = W[a] S(W[b]^T W[b])


@dataclass(frozen=True)
class HeadFactors:
    """Per-head quantities of every head, flat index `layer * n_head + head`, computed once.

    `W (n, 4, d, k)`: `[W_q, W_k, W_v, W_o^T]` in the weights' dtype; `grams (n, 4, k, k)`: `W^T W` of each factor in
    float64; `qk_norm2`, `ov_norm2 (n,)`: `||W_qk||_F^2`, `||W_ov||_F^2` in float64.
    """

    W: torch.Tensor
    grams: torch.Tensor
    qk_norm2: torch.Tensor
    ov_norm2: torch.Tensor
    n_head: int

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.W.shape[-2])

    def readers(self, kinds: list[str], heads: torch.Tensor) -> torch.Tensor:
        """`X (len(heads) * len(kinds), d, k)`, head-major, weights' dtype, stored transposed (both layouts read fast),
        with `X X^T` the side of each `kind` in `READER_FACTORS` of each head.

        "K": `W_qk^T W_qk`, "Q": `W_qk W_qk^T`, "V": `W_ov^T W_ov` (receiving side), "writer": `W_ov W_ov^T`
        (sending side); `X = W[a] S` with `S S^T = W[b]^T W[b]`, the `k x k` root taken in float64.
        """
        out = torch.empty(len(heads), len(kinds), self.W.shape[-1], self.d_model, dtype=self.W.dtype, device="cpu")
        for j, kind in enumerate(kinds):
            a, b = READER_FACTORS[kind]
            torch.matmul(gram_root(self.grams[heads, b]).to(self.W.dtype).mT, self.W[heads, a].mT, out=out[:, j])
        return out.flatten(0, 1).mT


def head_factors(W_all: torch.Tensor) -> HeadFactors:
    """`HeadFactors` of `W_all (L, H, 4, d, k)`: the weights on the CPU (half precision as float32), float64 Grams."""
    W = W_all.detach()
    if torch.finfo(W.dtype).bits < 32:
        W = W.float()
    W = W.cpu().flatten(0, 1)  # (n, 4, d, k)
    grams = (W.mT @ W).double()  # (n, 4, k, k)
    qk_norm2 = (grams[:, Q] * grams[:, K]).sum((-2, -1))
    ov_norm2 = (grams[:, O] * grams[:, V]).sum((-2, -1))
    return HeadFactors(W, grams, qk_norm2, ov_norm2, int(W_all.shape[1]))


def gram_root(gram: torch.Tensor) -> torch.Tensor:
    """`S (..., k, k)` with `S S^T = gram` for positive semi-definite `gram (..., k, k)`: Cholesky, or, when one of
    the batch is rank-deficient, `V sqrt(Lambda)` from the eigendecomposition of every one."""
    lower, info = torch.linalg.cholesky_ex(gram)
    if bool((info == 0).all()):
        return lower
    values, vectors = torch.linalg.eigh(gram)
    return vectors * values.clamp_min(0).sqrt().unsqueeze(-2)


def pair_products(
    factors: HeadFactors, receivers: np.ndarray, senders: np.ndarray, products: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Each of `products` (names in `PRODUCTS`) for pairs `(receivers[i], senders[i])` (flat ids), `(n,)` float64."""
    unknown = set(products) - set(PRODUCTS)
    if unknown:
        raise IHLibError(f"Unknown pair products {sorted(unknown)}: choose from {PRODUCTS}.")
    kinds = [p for p in products if p != "trace"]
    recv_ids, recv_pos = np.unique(receivers, return_inverse=True)
    send_ids, send_pos = np.unique(senders, return_inverse=True)
    groups = _receiver_layer_groups(recv_ids, recv_pos, send_pos, factors.n_head)
    recv, send = torch.from_numpy(recv_ids), torch.from_numpy(send_ids)
    sides = {}  # name: (receiving factors, sending factors), products summed over row blocks
    if kinds:  # all symmetric kinds in one product: receiver-major rows (receiver, kind)
        sides["symmetric"] = (factors.readers(kinds, recv), factors.readers(["writer"], send))
    if "trace" in products:
        W = factors.W
        sides["trace"] = ((W[recv, K], W[recv, Q].mT.contiguous()), (W[send, O], W[send, V].mT.contiguous()))
    n_sides = len(recv_ids) * len(products) + len(send_ids) * len(sides)
    rows = _block_rows(factors.d_model, n_sides, factors.W.element_size())
    buffers = {name: _block_buffers(recv_side, send_side, rows) for name, (recv_side, send_side) in sides.items()}
    sums = {
        name: torch.zeros(len(receivers), len(kinds) if name == "symmetric" else 1, dtype=torch.float64, device="cpu")
        for name in sides
    }
    for start in range(0, factors.d_model, rows):
        stop = min(start + rows, factors.d_model)
        for name, (recv_side, send_side) in sides.items():
            recv_block, send_block = _row_blocks(name, recv_side, send_side, start, stop, buffers[name])
            per_receiver = recv_block.shape[0] // len(recv_ids)
            for group in groups:
                rows_of_group = recv_block[group.rows.start * per_receiver : group.rows.stop * per_receiver]
                grid = (rows_of_group @ _take(send_block, group.cols).T).view(-1, per_receiver, len(group.cols))
                sums[name][group.pairs] += grid[group.row_of_pair, :, group.col_of_pair].double()
    out = {kind: sums["symmetric"][:, i] for i, kind in enumerate(kinds)}
    return out | ({"trace": sums["trace"][:, 0]} if "trace" in sums else {})


def _block_buffers(recv_side, send_side, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Storage for the largest row block of each side, `(heads, rows * d)`, allocated once and reused by every block
    (a fresh allocation of this size per block costs more in page faults than the products themselves)."""
    recv, send = (side if isinstance(side, torch.Tensor) else side[0] for side in (recv_side, send_side))
    d = recv.shape[-2]
    return tuple(torch.empty(X.shape[0], rows * d, dtype=X.dtype, device=X.device) for X in (recv, send))


def _row_blocks(
    name: str, recv_side, send_side, start: int, stop: int, buffers: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `start:stop` of both sides' `d x d` matrices, `(heads, entries)` views of `buffers`: upper blocks
    (symmetric) or full rows."""
    recv_buffer, send_buffer = buffers
    if name == "symmetric":
        return _symmetric_rows(recv_side, start, stop, recv_buffer), _symmetric_rows(
            send_side, start, stop, send_buffer, double_off_diagonal=True
        )
    (w_k, w_q_t), (w_o, w_v_t) = recv_side, send_side
    return _products(w_k[:, start:stop], w_q_t, recv_buffer), _products(w_o[:, start:stop], w_v_t, send_buffer)


def _symmetric_rows(
    X: torch.Tensor, start: int, stop: int, buffer: torch.Tensor, *, double_off_diagonal: bool = False
) -> torch.Tensor:
    """Rows `start:stop` of `X X^T (n, d, d)` from column `start` on, flattened `(n, rows * (d - start))`, written
    into `buffer`.

    The inner product of two symmetric matrices is the sum over these upper blocks, with the entries right of the
    diagonal block counted twice: `double_off_diagonal` doubles them on one side.
    """
    block = _products(X[:, start:stop], X.mT[:, :, start:], buffer).view(X.shape[0], stop - start, -1)
    if double_off_diagonal:
        block[:, :, stop - start :] *= 2
    return block.flatten(1)


def _products(A: torch.Tensor, B: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """`A[i] @ B[i]` for batches `A (n, m, k)`, `B (n, k, p)`, flattened `(n, m * p)` in the front of `buffer`: one
    `mm` per head, since the batched `bmm` runs these thin products (inner dimension `d_head`) at half the speed
    (measured, MKL, one thread)."""
    n, m, p = A.shape[0], A.shape[1], B.shape[2]
    out = buffer[:, : m * p].view(n, m, p)
    for i in range(n):
        torch.mm(A[i], B[i], out=out[i])
    return out.flatten(1)


def _take(rows: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """`rows[index]`, as a view when `index` is a contiguous increasing range."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return rows[int(index[0]) : int(index[0]) + index.size]
    return rows[torch.from_numpy(index)]


@dataclass(frozen=True)
class PairGroup:
    """Pairs `pairs` whose receivers are rows `rows` (one layer, contiguous) and senders columns `cols` of a grid."""

    pairs: torch.Tensor
    rows: slice
    cols: np.ndarray
    row_of_pair: torch.Tensor
    col_of_pair: torch.Tensor


def _receiver_layer_groups(
    recv_ids: np.ndarray, recv_pos: np.ndarray, send_pos: np.ndarray, n_head: int
) -> list[PairGroup]:
    """Pairs grouped by bands of the receiving heads' layers (sorted flat ids put a band's receivers side by side):
    consecutive layers share one grid product while at least `MIN_FILL` of its entries are pairs (one larger product
    runs faster than several thin ones, until the wasted entries cost more)."""
    layers = recv_ids[recv_pos] // n_head
    bands: list[np.ndarray] = []
    for layer in np.unique(layers):
        pairs = np.nonzero(layers == layer)[0]
        merged = np.concatenate([bands[-1], pairs]) if bands else pairs
        if bands and _fill(merged, recv_pos, send_pos) >= MIN_FILL:
            bands[-1] = merged
        else:
            bands.append(pairs)
    return [_pair_group(np.sort(pairs), recv_pos, send_pos) for pairs in bands]


def _fill(pairs: np.ndarray, recv_pos: np.ndarray, send_pos: np.ndarray) -> float:
    """Share of the grid (receivers' row range x distinct senders) of `pairs` that the pairs occupy."""
    rows = int(recv_pos[pairs].max() - recv_pos[pairs].min() + 1)
    return len(np.unique(recv_pos[pairs] * (send_pos.max() + 1) + send_pos[pairs])) / (
        rows * len(np.unique(send_pos[pairs]))
    )


def _pair_group(pairs: np.ndarray, recv_pos: np.ndarray, send_pos: np.ndarray) -> PairGroup:
    """The `PairGroup` of `pairs` (indices into the pair list)."""
    first, last = int(recv_pos[pairs].min()), int(recv_pos[pairs].max())
    cols = _gap_free(np.unique(send_pos[pairs]))
    row_of_pair = torch.from_numpy(recv_pos[pairs] - first)
    col_of_pair = torch.from_numpy(np.searchsorted(cols, send_pos[pairs]))
    return PairGroup(torch.from_numpy(pairs), slice(first, last + 1), cols, row_of_pair, col_of_pair)


def _gap_free(cols: np.ndarray) -> np.ndarray:
    """`cols` widened to the range `cols[0]..cols[-1]` when that adds at most a third more: one view, no copy."""
    span = int(cols[-1] - cols[0] + 1)
    return np.arange(cols[0], cols[-1] + 1) if span <= 1.34 * cols.size else cols


def _block_rows(d: int, n_sides: int, item: int) -> int:
    """Rows per block (at most `MAX_BLOCK_ROWS`) so that `n_sides` row blocks `(rows, d)` fit in `MEMORY_BYTES`."""
    return int(np.clip(MEMORY_BYTES // max(1, n_sides * d * item), 1, min(d, MAX_BLOCK_ROWS)))
