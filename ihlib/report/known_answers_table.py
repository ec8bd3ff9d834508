"""The verdict table of the page "A circuit built by hand": per planted variant and claim, judgement and truth."""

from __future__ import annotations

import pandas as pd

from ihlib.claims.known_answers import KnownAnswers
from ihlib.model.head_ids import head_labels
from ihlib.model.planted_layout import VARIANTS, planted_heads
from ihlib.model.planted_truth import CLAIMS, TRUTH, reason


def known_answers_table(results: dict[str, KnownAnswers]) -> pd.DataFrame:
    """One row per variant and claim: the verdict, the correct labels, whether it is one of them, and why."""
    rows = [
        {
            "variant": variant,
            "claim": claim,
            "verdict": result.labels[claim],
            "correct labels": ", ".join(sorted(TRUTH[variant][claim])),
            "agrees": result.labels[claim] in TRUTH[variant][claim],
            "why (from the construction)": reason(variant, claim),
        }
        for variant, result in results.items()
        for claim in CLAIMS
    ]
    return pd.DataFrame(rows)


def verdict_grid(results: dict[str, KnownAnswers]) -> pd.DataFrame:
    """Variants x claims: the verdict, marked "(!)" where it is not one of the correct labels; the variant named in
    the index (a page shows it as the first column)."""
    return pd.DataFrame(
        {
            claim: {
                variant: result.labels[claim] + ("" if result.labels[claim] in TRUTH[variant][claim] else " (!)")
                for variant, result in results.items()
            }
            for claim in CLAIMS
        }
    ).rename_axis("variant")


def variants_table(shape: str = "tiny") -> pd.DataFrame:
    """One row per planted variant: what it is, and its heads by role at `shape` (`L{layer}H{head}`)."""
    rows = []
    for name, variant in VARIANTS.items():
        heads = planted_heads(name, shape)
        rows.append(
            {"variant": name, "construction": variant.description}
            | {role: ", ".join(head_labels(found)) or "-" for role, found in heads.items()}
        )
    return pd.DataFrame(rows)
