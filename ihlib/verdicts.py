"""Verdicts per claim: what each chapter concludes, saved as `verdict.json` and gathered for the closing page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ihlib.errors import IHLibError

VERDICT_LABELS = ("supported", "partly supported", "not supported", "not informative", "not tested")


@dataclass
class Verdict:
    """A claim's verdict (one of `VERDICT_LABELS`), the sentences behind it and a one-line caveat.

    "not informative": the test ran but could not have failed on this model. Notebooks display it as Markdown
    (`_repr_markdown_`); `record()` is what gets saved as JSON.
    """

    claim: str
    verdict: str
    text: str
    details: list[str] = field(default_factory=list)
    caveat: str = ""

    def __post_init__(self) -> None:
        """Reject labels outside the three-step scale."""
        if self.verdict not in VERDICT_LABELS:
            raise IHLibError(f"Unknown verdict {self.verdict!r}: use one of {', '.join(VERDICT_LABELS)}.")

    def record(self) -> dict:
        """JSON-friendly form."""
        return {
            "claim": self.claim,
            "verdict": self.verdict,
            "text": self.text,
            "details": self.details,
            "caveat": self.caveat,
        }

    def _repr_markdown_(self) -> str:
        """Markdown shown by Jupyter: the verdict in bold, the evidence, then one bullet per detail."""
        bullets = "".join(f"\n- {line}" for line in self.details)
        caveat = f"\n\n*Caveat: {self.caveat}*" if self.caveat else ""
        return f"**{self.claim}: {self.verdict} on this model.** {self.text}\n{bullets}{caveat}"


@dataclass
class VerdictReport:
    """The verdicts found under a results folder, one per chapter that saved one, in chapter order."""

    verdicts: dict[str, list[Verdict]]
    missing: list[str]

    def table(self) -> pd.DataFrame:
        """One row per verdict: chapter, claim, verdict and its one-line caveat."""
        rows = [
            {"chapter": chapter, "claim": v.claim, "verdict": v.verdict, "caveat": v.caveat}
            for chapter, items in self.verdicts.items()
            for v in items
        ]
        return pd.DataFrame(rows, columns=["chapter", "claim", "verdict", "caveat"])

    def _repr_markdown_(self) -> str:
        """All verdicts as Markdown sections, then the chapters that saved none."""
        parts = [
            f"### {chapter}\n\n" + "\n\n".join(v._repr_markdown_() for v in items)
            for chapter, items in self.verdicts.items()
        ]
        if self.missing:
            parts.append("**No verdict found for:** " + ", ".join(self.missing) + " (run those chapters first).")
        return "\n\n".join(parts)


def load_verdicts(path: str | Path) -> list[Verdict]:
    """Read one chapter's `verdict.json`: a single record or a list of records."""
    data = json.loads(Path(path).read_text())
    records = data if isinstance(data, list) else [data]
    return [Verdict(**record) for record in records]


def collect_verdicts(results_dir: str | Path, chapters: list[str]) -> VerdictReport:
    """Gather `results_dir/<chapter>/verdict.json` for each chapter; list the chapters that have none."""
    results_dir = Path(results_dir)
    found, missing = {}, []
    for chapter in chapters:
        path = results_dir / chapter / "verdict.json"
        if path.is_file():
            found[chapter] = load_verdicts(path)
        else:
            missing.append(chapter)
    return VerdictReport(found, missing)
