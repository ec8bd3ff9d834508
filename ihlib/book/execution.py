"""Executing chapters with papermill: one job per chapter and model, in parallel kernels, failures marked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import papermill
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from tqdm import tqdm

from ihlib.book.interrupts import Interruption, RunInterrupted
from ihlib.book.pages import add_provenance_cell, data_links_text, page_record, provenance_text, tidy_stream_outputs
from ihlib.book.params import (
    parameters_for,
    typed_parameters,
)
from ihlib.book.places import (
    ModelPlace,
)
from ihlib.book.records import BookRun, ChapterFailed, ChapterInterrupted, say
from ihlib.book.toc import (
    chapter_name,
)
from ihlib.claims.testability import finish_stopped_notebook
from ihlib.claims.verdicts import FAILED_MARKER
from ihlib.heads.score_cache import CACHE_ENV
from ihlib.model.errors import BookError, ClaimNotTested

KERNEL_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # model-loading bars are noise on a page
    "TQDM_DISABLE": "1",  # progress bars stay on the runner's terminal, never on a page
    "TRANSFORMERS_VERBOSITY": "error",  # transformers logs its warnings (config checks) to stderr, not as warnings
    "PYTHONWARNINGS": "ignore",  # warnings are for whoever calls ihlib; a rendered page shows results only
}


def run_chapter(
    notebook: Path,
    output: Path,
    parameters: dict[str, object],
    cwd: Path,
    kernel: str,
    interruption: Interruption | None = None,
) -> float:
    """Execute `notebook` into `output` with papermill in `cwd`; return seconds, raise ChapterFailed on error.

    A chapter stopped by its gate (`ClaimNotTested`: the model lacks the heads) has finished: its page says why.
    Its kernel is tracked by `interruption`, which kills it on SIGINT or SIGTERM (the chapter then fails at once).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    interruption = interruption or Interruption()
    manager = AsyncKernelManager(kernel_name=kernel)
    interruption.add_kernel(manager)
    start = time.perf_counter()
    try:
        interruption.check()
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            km=manager,
            resources={"metadata": {"path": str(cwd)}},  # the kernel's cwd; papermill's cwd= would chdir this process
            progress_bar=False,
            extra_arguments=["--log-level=CRITICAL"],  # keep ipykernel's own log lines out of the run's log
        )
    except RunInterrupted:
        raise
    except papermill.PapermillExecutionError as err:
        if err.ename != ClaimNotTested.__name__:
            cell = f"In [{err.exec_count}]"
            raise ChapterFailed(chapter_name(notebook), f"{err.ename}: {err.evalue}", output, cell) from err
        finish_stopped_notebook(output)
    except Exception as err:
        raise ChapterFailed(chapter_name(notebook), f"{type(err).__name__}: {err}", output) from err
    finally:
        interruption.remove_kernel(manager)
        _shut_down(manager)
    tidy_stream_outputs(output)
    return time.perf_counter() - start


def _shut_down(manager: AsyncKernelManager) -> None:
    """Shut the kernel of `manager` down now, if it still has one."""
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)


@contextlib.contextmanager
def kernel_environment(*, score_cache: Path, threads: int) -> Iterator[None]:
    """Set KERNEL_ENV, the head-score cache folder and the threads per kernel for kernels started inside; restore
    every variable after."""
    values = {**KERNEL_ENV, CACHE_ENV: str(score_cache), "OMP_NUM_THREADS": str(threads)}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def previous_seconds(build_dir: Path) -> dict[str, float]:
    """Seconds per job of the last run that recorded them (`timings.json`), empty when there is none."""
    path = build_dir / "timings.json"
    return json.loads(path.read_text()).get("chapters", {}) if path.is_file() else {}


def longest_first(jobs: list[ChapterJob], seconds: dict[str, float]) -> list[ChapterJob]:
    """Jobs ordered to finish early on several workers: those the last run timed, longest first, then the others in
    their given order (chapter by chapter, each on every model, so that one chapter's runs overlap)."""
    return sorted(jobs, key=lambda job: -seconds.get(job.name, 0.0))


@dataclass(frozen=True)
class ChapterJob:
    """One chapter to execute on one model: where, with which parameters, and what its page records."""

    place: ModelPlace
    notebook: Path
    source: Path
    parameters: dict[str, object]
    page: dict[str, object]

    @property
    def name(self) -> str:
        """The job's name in progress lines, timings and the run record."""
        return self.place.job_name(self.notebook)


def chapter_job(
    root: Path, place: ModelPlace, notebook: Path, shared: dict[str, object], defaults: dict[str, object], date: str
) -> ChapterJob:
    """The job of running `root/notebook` at `place`: the shared parameters it declares, typed, with the place's
    model."""
    values = shared if place.site else {**shared, "model_name": place.model_name}
    parameters = typed_parameters(parameters_for(values, defaults), defaults, chapter=chapter_name(notebook))
    return ChapterJob(place, notebook, root / notebook, parameters, page_record(parameters, defaults, date))


def check_jobs(jobs: int | None) -> int:
    """Return the number of chapters run at once: `jobs`, or the number of cores when None; raise below 1."""
    if jobs is None:
        return available_cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise BookError(f"--jobs {jobs!r}: give a whole number of chapters to run at once, at least 1.")
    return jobs


def kernel_threads(workers: int) -> int:
    """Threads each kernel's torch may use so that `workers` kernels at once share the cores without oversubscribing."""
    return max(1, available_cores() // workers)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it, else the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def execute_jobs(
    jobs: list[ChapterJob],
    workers: int,
    kernel: str,
    run: BookRun,
    record: dict[str, dict],
    bar: tqdm,
    progress: bool,
    interruption: Interruption,
) -> None:
    """Run `jobs`, `workers` at a time, in order; record each outcome in `run` and `record`. A failure on the site's
    model stops the start of further jobs (those running finish); a failure on another model is recorded only. A
    stop signal (see `ihlib.book.interrupts`) starts no further job and ends the running ones at once."""
    pending, running = list(jobs), {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            while pending and len(running) < workers and run.failed is None and not interruption.requested:
                job = pending.pop(0)
                say(progress, f"{job.name}: running with {job.parameters or 'its defaults'}")
                running[pool.submit(publish_chapter, job, kernel=kernel, interruption=interruption)] = job
            if not running:
                break
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            if interruption.requested:
                interruption.kill_kernels()  # also those that started after the signal
            for future in done:
                _record_outcome(running.pop(future), future, run, record, progress)
                bar.update()


def _record_outcome(job: ChapterJob, future: Future, run: BookRun, record: dict[str, dict], progress: bool) -> None:
    """Store a finished job's seconds, failure or interruption in `run` and its page record in `record`; say it."""
    try:
        seconds = future.result()
    except ChapterInterrupted as stop:
        record[job.name] = {**job.page, "status": "interrupted", "error": stop.error}
        run.interrupted.append(job.name)
        say(progress, f"{job.name}: INTERRUPTED ({stop.error})")
        return
    except ChapterFailed as failure:
        record[job.name] = {**job.page, "status": "failed", "error": failure.error}
        say(progress, f"{job.name}: FAILED ({failure.error})")
        if job.place.site:
            run.failed = run.failed or failure
        else:
            run.model_failures.append(failure)
        return
    run.chapter_seconds[job.name] = seconds
    record[job.name] = {**job.page, "status": "done", "seconds": round(seconds, 1)}
    say(progress, f"{job.name}: done in {seconds:.1f} s")


def publish_chapter(job: ChapterJob, *, kernel: str, interruption: Interruption | None = None) -> float:
    """Execute a job's notebook into its place's `running/`, then move it into the place's `book/` only on success;
    return seconds.

    The chapter's results folder is emptied first, so its files all come from this run. On success the notebook
    gets a provenance cell: which run built it, links to its saved data and to itself. On failure the executed
    notebook goes to the place's `failed/`, the chapter's `verdict.json` is removed and `FAILED.json` holds the
    error (the conclusion shows "failed"); the previous executed notebook stays as it was. A chapter stopped by a
    signal raises ChapterInterrupted: its results folder holds only `FAILED.json` saying so, its partial notebook
    is removed.
    """
    place, notebook = job.place, job.notebook
    running = place.running / notebook.name
    failed = place.failed / notebook.name
    results = place.workdir / "results" / chapter_name(notebook)
    shutil.rmtree(results, ignore_errors=True)
    failed.unlink(missing_ok=True)
    try:
        seconds = run_chapter(job.source, running, job.parameters, place.workdir, kernel, interruption)
    except (ChapterFailed, RunInterrupted) as failure:
        if interruption is not None and interruption.requested:
            stop = ChapterInterrupted(job.name, f"interrupted by {interruption.signal_name}", running)
            running.unlink(missing_ok=True)
            shutil.rmtree(results, ignore_errors=True)
            mark_failed(results, stop, job.page)
            raise stop from failure
        failed.parent.mkdir(parents=True, exist_ok=True)
        if running.exists():
            os.replace(running, failed)
            failure.notebook = failed
        failure.chapter = job.name
        mark_failed(results, failure, job.page)
        raise
    add_provenance_cell(running, provenance_text(job.page) + data_links_text(notebook, results))
    (place.workdir / notebook).parent.mkdir(parents=True, exist_ok=True)
    os.replace(running, place.workdir / notebook)
    return seconds


def mark_failed(results: Path, failure: ChapterFailed, page: dict[str, object]) -> None:
    """Remove the chapter's `verdict.json` and write `FAILED.json` (error, cell, notebook, run) in `results`."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "verdict.json").unlink(missing_ok=True)
    marker = {
        "chapter": failure.chapter,
        "error": failure.error,
        "cell": failure.cell,
        "notebook": str(failure.notebook),
        "status": "interrupted" if isinstance(failure, ChapterInterrupted) else "failed",
    }
    (results / FAILED_MARKER).write_text(json.dumps({**marker, **page}, indent=1))
