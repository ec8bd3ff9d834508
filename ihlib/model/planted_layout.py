"""Known-answer models, the plan: shapes, which head does what in each variant, and the residual subspaces.

A planted model is a plain GPT-2 whose induction circuit is written by hand (`ihlib.model.planted` writes the
weights). The residual space (orthogonal to the all-ones vector, so layer norm only rescales) is split into
orthogonal subspaces: `T` token code, `P` position code, `S1` previous token (written by shifting heads), `S2`
previous token again (written by an MLP in the variant "mlp"), `O` copied token (read by the unembedding), and
one dead block `D` per circuit head, which nothing writes: the head's weights outside the circuit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ihlib.model.errors import ParameterError

D_HEAD = 64  # every shape keeps GPT-2's head width
CODE = 48  # token code width: two factors of 24 coordinates (even and odd coordinates of T)
JUNK = 16  # head coordinates of each circuit head spent outside the circuit (its dead block D)


@dataclass(frozen=True)
class PlantedShape:
    """GPT-2 shape of a planted model: layers, heads per layer, width, vocabulary, context."""

    n_layer: int
    n_head: int
    d_model: int
    vocab_size: int
    n_positions: int
    n_freq: int  # position code: n_freq sine/cosine pairs (P has 2 n_freq coordinates)
    n_inner: int  # MLP width (GPT-2: 4 d_model; smaller in the test shape, for speed)


SHAPES: dict[str, PlantedShape] = {
    "tiny": PlantedShape(n_layer=4, n_head=6, d_model=384, vocab_size=2000, n_positions=128, n_freq=16, n_inner=256),
    "gpt2-small": PlantedShape(
        n_layer=12, n_head=12, d_model=768, vocab_size=50257, n_positions=1024, n_freq=32, n_inner=3072
    ),
}


@dataclass(frozen=True)
class CircuitHead:
    """One head written by hand, in slot coordinates (layer slot 0..3, head slot 0..5), and what it does.

    `role`: "shifting" (attends `shift` back, copies the token code into `space`), "induction" (query reads T, key
    reads `space`, copies T into O), or "positional" (attends `shift` back by position alone, copies T into O).
    `factor`: which token-code coordinates an induction head copies, "both", "even" or "odd" ("two-circuits").
    """

    layer: int
    head: int
    role: str
    factor: str = "both"
    space: str = "S1"
    shift: int = 1


@dataclass(frozen=True)
class Variant:
    """A planted variant: its circuit heads (slot coordinates), the MLP route if any, and a one-line description."""

    name: str
    heads: tuple[CircuitHead, ...]
    mlp_layer: int | None
    description: str


SH, IH, POS = "shifting", "induction", "positional"
NO_COMPOSITION_SHIFT = 24  # the positional heads attend 24 back: the induction offset at the scoring's seg_len 25

VARIANTS: dict[str, Variant] = {
    "direct": Variant(
        "direct",
        (
            CircuitHead(0, 1, SH),
            CircuitHead(1, 4, SH),
            *(CircuitHead(l, h, IH) for l, h in ((2, 2), (2, 5), (3, 0), (3, 3))),
        ),
        None,
        "two shifting heads (layers 0, 1) write the previous token into S1; four induction heads (2, 3) key on S1",
    ),
    "one-layer": Variant(
        "one-layer",
        (CircuitHead(0, 1, SH), CircuitHead(1, 4, SH), *(CircuitHead(2, h, IH) for h in (0, 2, 5))),
        None,
        "as direct, but the three induction heads share layer 2",
    ),
    "mlp": Variant(
        "mlp",
        (
            CircuitHead(0, 1, SH),
            CircuitHead(1, 4, SH),
            *(CircuitHead(l, h, IH, space="S2") for l, h in ((2, 2), (2, 5), (3, 0), (3, 3))),
        ),
        1,
        "the shifting heads write S1, the MLP of layer 1 copies S1 into S2, the induction heads key on S2",
    ),
    "two-circuits": Variant(
        "two-circuits",
        (
            CircuitHead(0, 1, SH),
            CircuitHead(1, 3, IH, factor="even"),
            CircuitHead(1, 4, SH, space="S2"),
            CircuitHead(2, 2, IH, factor="odd", space="S2"),
        ),
        None,
        "circuit A (layers 0 -> 1, via S1) copies the even half of the token code, B (1 -> 2, via S2) the odd half",
    ),
    "no-composition": Variant(
        "no-composition",
        (
            CircuitHead(0, 1, SH),
            *(CircuitHead(l, h, POS, shift=NO_COMPOSITION_SHIFT) for l, h in ((1, 3), (2, 2), (3, 0))),
        ),
        None,
        f"a shifting head nobody reads; three heads attend {NO_COMPOSITION_SHIFT} back by position alone and copy",
    ),
}
DEFAULT_VARIANT = "direct"


def check_shape(shape: str | PlantedShape) -> PlantedShape:
    """Return the `PlantedShape` named `shape` (or `shape` itself), checked to hold every subspace."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ParameterError(f"Unknown planted shape {shape!r}: use one of {', '.join(SHAPES)} or a PlantedShape.")
        shape = SHAPES[shape]
    if shape.d_model != shape.n_head * D_HEAD or shape.n_layer < 4 or shape.n_head < 6:
        raise ParameterError(
            f"Planted shape {shape}: needs d_model = n_head x {D_HEAD}, at least 4 layers and 6 heads per layer."
        )
    if subspace_sizes(shape)["total"] > shape.d_model - 1:
        raise ParameterError(f"Planted shape {shape}: d_model={shape.d_model} is too small for the subspaces.")
    if 2 * shape.n_freq > D_HEAD:
        raise ParameterError(f"n_freq={shape.n_freq} is too large: 2 n_freq must fit one head ({D_HEAD}).")
    return shape


def check_variant(variant: str) -> Variant:
    """Return the `Variant` named `variant`, or raise naming the variants."""
    if variant not in VARIANTS:
        raise ParameterError(f"Unknown planted variant {variant!r}: use one of {', '.join(VARIANTS)}.")
    return VARIANTS[variant]


MAX_CIRCUIT_HEADS = max(len(v.heads) for v in VARIANTS.values())


def subspace_sizes(shape: PlantedShape) -> dict[str, int]:
    """Widths of the residual subspaces T, P, S1, S2, O, D (all circuit heads' dead blocks) and their total."""
    sizes = {"T": CODE, "P": 2 * shape.n_freq, "S1": CODE, "S2": CODE, "O": CODE, "D": JUNK * MAX_CIRCUIT_HEADS}
    return sizes | {"total": sum(sizes.values())}


def placed(variant: Variant, shape: PlantedShape) -> list[tuple[int, int, CircuitHead]]:
    """The variant's circuit heads at `[layer, head]` of `shape`: slots spread over the layers and heads."""
    layer_step, head_step = shape.n_layer // 4, shape.n_head // 6
    return [(c.layer * layer_step, c.head * head_step, c) for c in variant.heads]


def planted_heads(variant: str, shape: str | PlantedShape = "tiny") -> dict[str, list[list[int]]]:
    """The `[layer, head]` of the variant's heads by role ("shifting", "induction", "positional") at `shape`."""
    heads: dict[str, list[list[int]]] = {SH: [], IH: [], POS: []}
    for layer, head, circuit in placed(check_variant(variant), check_shape(shape)):
        heads[circuit.role].append([layer, head])
    return heads
