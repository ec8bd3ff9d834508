"""The seed's printed GPT-2 scores: the one constant equals what the seed text printed, line by line."""

from __future__ import annotations

import re
from pathlib import Path

from ihlib.report.seed_gpt2 import SEED_FILE, SEED_GPT2_TOP

REPO = Path(__file__).resolve().parents[2]
SHARED_SEED = REPO.parent / "shared" / SEED_FILE  # the team's copy, beside a checkout on our machines


def test_the_seed_scores_are_the_ones_the_seed_printed_in_the_printed_order():
    """The top 10 of each kind are the first 10 lines the seed printed for it; induction first, then shifting."""
    printed = re.findall(r"^Layer (\d+) Head (\d+): score ([\d.]+)$", (REPO / SEED_FILE).read_text(), flags=re.M)
    induction, shifting = printed[: len(printed) // 2], printed[len(printed) // 2 :]
    for kind, lines in (("induction", induction), ("shifting", shifting)):
        expected = [((int(layer), int(head)), float(score)) for layer, head, score in lines]
        assert len(SEED_GPT2_TOP[kind]) == 10 and SEED_GPT2_TOP[kind] == expected[:10]


def test_the_repository_copy_of_the_seed_is_the_team_copy_where_that_is_at_hand():
    if SHARED_SEED.is_file():
        assert (REPO / SEED_FILE).read_bytes() == SHARED_SEED.read_bytes()
