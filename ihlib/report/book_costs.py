"""What the whole book costs at GPT-2-small's shapes, measured: one committed record (`data/book_costs.json`) of a
run of every chapter on the hand-built `planted-gpt2-small` with `params/planted-gpt2-small.yml`, quoted by the
README and shown on the page "This model and GPT-2"."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ihlib.report.sentences import Paragraph

RECORD = Path(__file__).with_name("data") / "book_costs.json"


def book_costs(path: Path = RECORD) -> dict:
    """The record: model, parameter file, date, machine, commit, seconds per chapter (each alone), site, wall."""
    return json.loads(Path(path).read_text())


def cost_table(record: dict) -> pd.DataFrame:
    """One row per chapter: its own seconds and minutes and whether it finished, then the site build and the whole
    run's wall clock."""
    rows = [(name, seconds, "done") for name, seconds in record["chapters"].items()]
    rows += [(name, seconds, "not finished") for name, seconds in record.get("unfinished", {}).items()]
    if record.get("site") is not None:
        rows.append(("site (Jupyter Book)", record["site"], "done"))
    rows.append(("whole run, wall clock", record["wall"], "not finished" if record.get("unfinished") else "done"))
    frame = pd.DataFrame(rows, columns=["chapter", "seconds", "status"])
    frame["seconds"] = frame["seconds"].round().astype(int)
    frame["minutes"] = (frame["seconds"] / 60).round(1)
    return frame


def total_minutes(record: dict) -> float:
    """The whole run's wall-clock minutes (chapters in parallel, `jobs` at once, and the site)."""
    return round(record["wall"] / 60, 1)


def cost_sentence(record: dict) -> Paragraph:
    """One sentence: the whole run's wall-clock minutes, where, when and with which chapters unfinished (if any)."""
    unfinished = record.get("unfinished", {})
    tail = (
        f" {', '.join(unfinished)} did not finish in the time the session had ("
        + ", ".join(f"stopped after {int(s)} s" for s in unfinished.values())
        + "): their rows are lower bounds."
        if unfinished
        else ""
    )
    return Paragraph(
        f"The whole run took **{total_minutes(record)} minutes** of wall clock on {record['machine']}, "
        f"{record['jobs']} chapters at a time, {record['date']} (commit `{record['commit']}`).{tail}"
    )
