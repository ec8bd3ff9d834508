"""The known answers: for every planted variant and claim, the verdict labels that are correct, and why.

Derived from the construction (`ihlib.model.planted`, `ihlib.model.planted_layout`), written before any claim test
ran on the variants. A known-answer test that disagrees is fixed in the test (the claim code), not here; a truth
changes only with a written argument from the construction, in the commit message.

Claims (the judgements of chapters 1-4, as the chapters call them): "diagonal" (`judge_diagonal`), "subspace"
(`judge_subspace_controls`), "shuffle QK" / "shuffle OV" (`judge_shuffle_controls`), "projection QK" /
"projection OV" (`judge_projection`). Copying is tested at the chapters' default `copy_seg_len` 20, head scores at
`seg_len` 25.
"""

from __future__ import annotations

CLAIMS = ("diagonal", "subspace", "shuffle QK", "shuffle OV", "projection QK", "projection OV")

SUPPORTED = frozenset({"supported"})
NOT_SUPPORTED = frozenset({"not supported"})
PARTLY_AT_MOST = frozenset({"partly supported", "not supported"})
CANNOT_FAIL = frozenset({"not informative", "not supported"})
PARTLY = frozenset({"partly supported"})

TRUTH: dict[str, dict[str, frozenset[str]]] = {
    "direct": {
        "diagonal": SUPPORTED,
        "subspace": SUPPORTED,
        "shuffle QK": SUPPORTED,
        "shuffle OV": SUPPORTED,
        "projection QK": SUPPORTED,
        "projection OV": PARTLY,
    },
    "one-layer": {
        "diagonal": SUPPORTED,
        "subspace": SUPPORTED,
        "shuffle QK": frozenset({"not informative"}),
        "shuffle OV": SUPPORTED,
        "projection QK": SUPPORTED,
        "projection OV": PARTLY,
    },
    "mlp": {
        "diagonal": NOT_SUPPORTED,
        "subspace": PARTLY_AT_MOST,
        "shuffle QK": SUPPORTED,
        "shuffle OV": SUPPORTED,
        "projection QK": SUPPORTED,
        "projection OV": NOT_SUPPORTED,
    },
    "two-circuits": {
        "diagonal": frozenset({"supported", "partly supported"}),
        "subspace": PARTLY_AT_MOST,
        "shuffle QK": PARTLY_AT_MOST,
        "shuffle OV": PARTLY_AT_MOST,
        "projection QK": NOT_SUPPORTED,
        "projection OV": PARTLY_AT_MOST,
    },
    "no-composition": {
        "diagonal": NOT_SUPPORTED,
        "subspace": PARTLY_AT_MOST,
        "shuffle QK": CANNOT_FAIL,
        "shuffle OV": CANNOT_FAIL,
        "projection QK": frozenset({"not supported", "not tested"}),
        "projection OV": frozenset({"not supported", "not tested"}),
    },
}

WHY: dict[str, dict[str, str]] = {
    "direct": {
        "diagonal": "every induction head's W_qk W_ov with every shifting head is T diag(sigma^2) T^T plus noise",
        "subspace": "every induction head keys on S1 with one spectrum; every shifting head writes S1 with it",
        "shuffle QK": "the four induction heads (layers 2, 3) carry the same circuit; other heads' QK is random",
        "shuffle OV": "the two shifting heads (layers 0, 1) carry the same circuit; other heads write nothing to S1",
        "projection QK": "the keys read only S1, the top of every fold's stacked W_qk; a random subspace misses it",
        "projection OV": "the shifting heads write only S1, the common key subspace of the induction heads: removing "
        "it kills copying and keeping it suffices, but the token code is redundant and the match has a wide margin "
        "(MATCH_LOGIT per shifting head), so keeping any subspace with the same share of a shifting head's energy "
        "(which overlaps S1 by about half) copies as well: keep-only cannot beat its energy-matched control",
    },
    "one-layer": {
        "shuffle QK": "the induction heads share layer 2, where heads that attend alike are interchangeable",
    },
    "mlp": {
        "diagonal": "keys read S2, shifting heads write S1 (orthogonal): the direct product is noise",
        "subspace": "the induction heads share S2 (that half holds); S2 is orthogonal to the shifting heads' S1",
        "shuffle QK": "as in direct",
        "shuffle OV": "as in direct: both shifting heads write S1 before the MLP of layer 1 reads it",
        "projection QK": "the keys read only S2, the common subspace",
        "projection OV": "the common subspace S2 is orthogonal to what the shifting heads write (S1): removing it "
        "changes nothing, keeping only it removes everything",
    },
    "two-circuits": {
        "diagonal": "two of the three composable pairs compose (A x A, B x B); B's head does not read A's S1",
        "subspace": "the induction heads key on orthogonal subspaces (S1, S2): they share none",
        "shuffle QK": "A's induction head (layer 1) given B's QK keys on S2, written only in layer 1: it fails and "
        "the even half of the token code is lost",
        "shuffle OV": "B's shifting head (layer 1) given A's OV writes S1 after A's induction head read it",
        "projection QK": "cross-fitted, each induction head is edited with the other circuit's key subspace",
        "projection OV": "no subspace is common to both circuits: up to rank 64 the stacked subspace covers each "
        "circuit's key space only in part, while a head's own top directions cover all of its output",
    },
    "no-composition": {
        "diagonal": "the positional heads' keys read P; the shifting head writes S1, which nothing reads",
        "subspace": "the positional heads share P (that half holds); nothing of theirs matches S1",
        "shuffle QK": "they attend 24 back: at copy_seg_len 20 the model does not copy, so nothing can break it",
        "shuffle OV": "the model does not copy at copy_seg_len 20, so nothing can break it",
        "projection QK": "the model does not copy at copy_seg_len 20: no edit can kill copying",
        "projection OV": "the model does not copy at copy_seg_len 20: no edit can kill copying",
    },
}


def truth(variant: str, claim: str) -> frozenset[str]:
    """The verdict labels that are correct for `claim` on the planted `variant`."""
    return TRUTH[variant][claim]


def reason(variant: str, claim: str) -> str:
    """Why, from the construction (the variant's own sentence, else direct's)."""
    return WHY[variant].get(claim) or WHY["direct"][claim]
