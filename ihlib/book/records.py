"""What a run records: per page status (`run.json`), timings (`timings.json`) and progress lines."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ihlib.book.folders import (
    RUN_RECORD,
)
from ihlib.book.places import (
    ModelPlace,
)


class ChapterFailed(RuntimeError):
    """A chapter raised while it was executed; carries the chapter name, the error in one line and the notebook."""

    def __init__(self, chapter: str, error: str, notebook: Path, cell: str = ""):
        self.chapter, self.error, self.notebook, self.cell = chapter, error, notebook, cell
        super().__init__(chapter, error)

    def __str__(self) -> str:
        """The chapter, the cell and the error, then where the executed notebook with the error is."""
        where = f" in cell {self.cell}" if self.cell else ""
        return f"Chapter {self.chapter} failed{where}: {self.error}\nExecuted notebook with the error: {self.notebook}"


class ChapterInterrupted(ChapterFailed):
    """A chapter stopped by SIGINT or SIGTERM before it finished; its results folder holds only the marker."""


@dataclass
class BookRun:
    """What a run did: seconds per executed chapter (toc order), the site build time and the site's index."""

    chapter_seconds: dict[str, float] = field(default_factory=dict)
    site_seconds: float | None = None
    index_html: Path | None = None
    failed: ChapterFailed | None = None
    removed_site: Path | None = None
    model_failures: list[ChapterFailed] = field(default_factory=list)
    wall_seconds: float | None = None
    interrupted: list[str] = field(default_factory=list)


def in_toc_order(record: dict[str, object], notebooks: list[Path], places: list[ModelPlace]) -> dict[str, object]:
    """`record`'s entries by page in toc order, the site model's first, then each other model's."""
    names = [place.job_name(nb) for place in places for nb in notebooks]
    return {name: record[name] for name in names if name in record}


def load_run_record(build_dir: Path) -> dict[str, dict]:
    """Return the per-chapter records of `build_dir/run.json` (empty when there is none)."""
    path = build_dir / RUN_RECORD
    return json.loads(path.read_text()).get("chapters", {}) if path.is_file() else {}


def save_run_record(build_dir: Path, chapters: dict[str, dict]) -> None:
    """Write `build_dir/run.json`: for each executed page (toc order), its status, date, model and parameters."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / RUN_RECORD).write_text(json.dumps({"chapters": chapters}, indent=1, default=repr))


def say(progress: bool, line: str) -> None:
    """Print a progress line above the progress bar (one line per event, readable in CI logs)."""
    if progress:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def save_timings(build_dir: Path, run: BookRun) -> None:
    """Write `build_dir/timings.json`: seconds per chapter and for the site, and the failure if any."""
    build_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "chapters": run.chapter_seconds,
        "site": run.site_seconds,
        "wall": run.wall_seconds,
        "failed": None if run.failed is None else {"chapter": run.failed.chapter, "error": run.failed.error},
        "model_failures": [{"chapter": f.chapter, "error": f.error} for f in run.model_failures],
    }
    (build_dir / "timings.json").write_text(json.dumps(record, indent=1))


def timing_table(run: BookRun) -> str:
    """Return a plain-text table of seconds per chapter (each alone), the site build, their sum and the wall-clock
    total (less than the sum when chapters ran in parallel)."""
    rows = [(name, f"{seconds:8.1f}") for name, seconds in run.chapter_seconds.items()]
    rows += [(failure.chapter, "  FAILED") for failure in [*run.model_failures, run.failed] if failure is not None]
    if run.site_seconds is not None:
        rows.append(("site (Jupyter Book)", f"{run.site_seconds:8.1f}"))
    rows.append(("sum", f"{sum(run.chapter_seconds.values()) + (run.site_seconds or 0.0):8.1f}"))
    if run.wall_seconds is not None:
        rows.append(("total (wall clock)", f"{run.wall_seconds:8.1f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'step':<{width}}  seconds", f"{'-' * width}  --------"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
