"""Verdicts per claim: what each chapter concludes, saved as `verdict.json` and gathered for the closing page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ihlib.model.errors import IHLibError

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


FAILED_MARKER = "FAILED.json"  # written by the book runner in a chapter's results folder when the chapter failed


@dataclass
class VerdictReport:
    """The verdicts found under a results folder, in chapter order; chapters whose last run failed; missing ones."""

    verdicts: dict[str, list[Verdict]]
    missing: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    chapters: list[str] = field(default_factory=list)

    def _order(self) -> list[str]:
        """The chapters with a verdict or a failure, in the order they were asked for."""
        return [c for c in self.chapters or [*self.verdicts, *self.failed] if c in self.verdicts or c in self.failed]

    def table(self) -> pd.DataFrame:
        """One row per verdict: chapter, claim, verdict and its one-line caveat ("failed" for a failed chapter)."""
        rows = []
        for chapter in self._order():
            if chapter in self.failed:
                rows.append({"chapter": chapter, "claim": "(the chapter failed)", "verdict": "failed", "caveat": ""})
            else:
                rows += [
                    {"chapter": chapter, "claim": v.claim, "verdict": v.verdict, "caveat": v.caveat}
                    for v in self.verdicts[chapter]
                ]
        return pd.DataFrame(rows, columns=["chapter", "claim", "verdict", "caveat"])

    def _repr_markdown_(self) -> str:
        """All verdicts as Markdown sections (a failed chapter says so, with its error), then the missing ones."""
        parts = [self._section(chapter) for chapter in self._order()]
        if self.missing:
            parts.append("**No verdict found for:** " + ", ".join(self.missing) + " (run those chapters first).")
        return "\n\n".join(parts)

    def _section(self, chapter: str) -> str:
        """One chapter's Markdown section: its verdicts, or why it has none."""
        if chapter in self.failed:
            return (
                f"### {chapter}: failed\n\nThe last run of this chapter failed ({self.failed[chapter]}), so it has "
                f"no verdict; its page may show an earlier run. Re-run it: `python -m ihlib.book --only {chapter}`."
            )
        return f"### {chapter}\n\n" + "\n\n".join(v._repr_markdown_() for v in self.verdicts[chapter])


def load_verdicts(path: str | Path) -> list[Verdict]:
    """Read one chapter's `verdict.json`: a single record or a list of records."""
    data = json.loads(Path(path).read_text())
    records = data if isinstance(data, list) else [data]
    return [Verdict(**record) for record in records]


def collect_verdicts(results_dir: str | Path, chapters: list[str]) -> VerdictReport:
    """Gather `results_dir/<chapter>/verdict.json` for each chapter; a `FAILED.json` there wins over any verdict."""
    results_dir = Path(results_dir)
    found, failed, missing = {}, {}, []
    for chapter in chapters:
        folder = results_dir / chapter
        if (folder / FAILED_MARKER).is_file():
            failed[chapter] = json.loads((folder / FAILED_MARKER).read_text()).get("error", "unknown error")
        elif (folder / "verdict.json").is_file():
            found[chapter] = load_verdicts(folder / "verdict.json")
        else:
            missing.append(chapter)
    return VerdictReport(found, missing, failed=failed, chapters=list(chapters))


def save_verdicts(verdicts: Verdict | list[Verdict], save_dir: str | Path) -> Path:
    """Save a chapter's verdict (one, or a list) as `save_dir/verdict.json`, which the closing page gathers."""
    record = [v.record() for v in verdicts] if isinstance(verdicts, list) else verdicts.record()
    folder = Path(save_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verdict.json").write_text(json.dumps(record, indent=1))
    return folder / "verdict.json"


def clear_verdicts(save_dir: str | Path) -> None:
    """Remove a stale `save_dir/verdict.json` as a chapter starts, so that a chapter that fails leaves no verdict."""
    (Path(save_dir) / "verdict.json").unlink(missing_ok=True)
