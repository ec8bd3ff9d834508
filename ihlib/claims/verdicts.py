"""Verdicts per claim: what each chapter concludes, saved as `verdict.json` and gathered for the closing page."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ihlib.core.stats import Interval
from ihlib.model.errors import IHLibError

VERDICT_LABELS = ("supported", "partly supported", "not supported", "not informative", "not tested")


@dataclass(frozen=True)
class KeyNumber:
    """The number a verdict was judged on, as data: what it `measures`, the `comparison` judged (e.g. "listed pairs
    minus random composable pairs"), and its `value` (an `Interval`: mean, 95% low and high; NaN bounds: none)."""

    measures: str
    comparison: str
    value: Interval

    def formatted(self) -> str:
        """The value as "+0.55 [+0.43, +0.68]" (signed, two decimals; "(no interval)" without bounds)."""
        mean, low, high = (round(x, 2) + 0.0 for x in (self.value.mean, self.value.low, self.value.high))
        if math.isnan(low) or math.isnan(high):
            return f"{mean:+.2f} (no interval)"
        return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"

    def record(self) -> dict:
        """JSON-friendly form (the interval as `{mean, low, high}`)."""
        return {"measures": self.measures, "comparison": self.comparison, "value": asdict(self.value)}

    @classmethod
    def from_record(cls, record: dict) -> KeyNumber:
        """Inverse of `record`."""
        return cls(record["measures"], record["comparison"], Interval(**record["value"]))


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict (one of `VERDICT_LABELS`) on one `model`, within one `scope` (what the test covers, e.g.
    "direct weight path", "top-1 copying on repeated random tokens"), the sentences behind it, a one-line caveat,
    the `key` number it was judged on (None when nothing was judged) and a one-sentence `summary` (the box's
    sentence; "" when `text` is already one).

    "not informative": the test ran but could not have failed on this model. A chapter may hold several verdicts
    of one claim with different scopes. Notebooks display it as Markdown (`_repr_markdown_`); `record()` is what
    gets saved as JSON.
    """

    claim: str
    verdict: str
    text: str
    details: list[str] = field(default_factory=list)
    caveat: str = ""
    model: str = ""
    scope: str = ""
    key: KeyNumber | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        """Reject labels outside the scale."""
        if self.verdict not in VERDICT_LABELS:
            raise IHLibError(f"Unknown verdict {self.verdict!r}: use one of {', '.join(VERDICT_LABELS)}.")

    def record(self) -> dict:
        """JSON-friendly form."""
        return {
            "claim": self.claim,
            "verdict": self.verdict,
            "text": self.text,
            "details": list(self.details),
            "caveat": self.caveat,
            "model": self.model,
            "scope": self.scope,
            "key": self.key.record() if self.key is not None else None,
            "summary": self.summary,
        }

    @classmethod
    def from_record(cls, record: dict) -> Verdict:
        """Inverse of `record` (records saved before `model`, `scope` and `key` existed read with them empty)."""
        key = record.get("key")
        fields = {k: v for k, v in record.items() if k != "key"}
        return cls(**fields, key=KeyNumber.from_record(key) if key else None)

    @property
    def sentence(self) -> str:
        """The verdict in one sentence: `summary`, else `text`."""
        return self.summary or self.text

    @property
    def where(self) -> str:
        """ "on ihlib-language, top-1 copying on repeated random tokens": the model and scope, as far as known."""
        model = f"on {self.model}" if self.model else "on this model"
        return f"{model}, {self.scope}" if self.scope else model

    def _repr_markdown_(self) -> str:
        """Markdown shown by Jupyter: the verdict in bold with model and scope, the key number, the evidence, then
        one bullet per detail."""
        bullets = "".join(f"\n- {line}" for line in self.details)
        caveat = f"\n\n*Caveat: {self.caveat}*" if self.caveat else ""
        key = f" Key number: {self.key.measures}, {self.key.comparison}: {self.key.formatted()}." if self.key else ""
        return f"**{self.claim}: {self.verdict} {self.where}.**{key} {self.text}\n{bullets}{caveat}"


def key_text(verdict: Verdict) -> str:
    """The verdict's key number in words: "what it measures (comparison): +0.55 [+0.43, +0.68]"; "" without one."""
    key = verdict.key
    return f"{key.measures} ({key.comparison}): {key.formatted()}" if key else ""


def verdict_row(verdict: Verdict) -> dict[str, str]:
    """One verdict as a table row: claim, model, scope, verdict, key number, caveat."""
    return {
        "claim": verdict.claim,
        "model": verdict.model,
        "scope": verdict.scope,
        "verdict": verdict.verdict,
        "key number": key_text(verdict),
        "caveat": verdict.caveat,
    }


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
        """One row per verdict: chapter, claim, model, scope, verdict, the key number it was judged on (what it
        measures and its value) and the one-line caveat ("failed" for a failed chapter)."""
        columns = ["chapter", "claim", "model", "scope", "verdict", "key number", "caveat"]
        rows = []
        for chapter in self._order():
            if chapter in self.failed:
                rows.append({"chapter": chapter, "claim": "(the chapter failed)", "verdict": "failed"})
            else:
                rows += [{"chapter": chapter, **verdict_row(v)} for v in self.verdicts[chapter]]
        return pd.DataFrame(rows, columns=columns).fillna("")

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
    return [Verdict.from_record(record) for record in records]


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
