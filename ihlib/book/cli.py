"""The command line `python -m ihlib.book`: parse the options, run the chapters, build the site."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from ihlib.book.execution import (
    chapter_job,
    check_jobs,
    execute_jobs,
    kernel_environment,
    kernel_threads,
    longest_first,
    previous_seconds,
)
from ihlib.book.folders import (
    CACHE_DIR,
    HTML_DIR,
    SOURCE_DIR,
    build_site,
    check_build_dir,
    clean_build,
    copy_unexecuted,
    prepare_source,
)
from ihlib.book.guard import build_lock, claim_build_dir
from ihlib.book.interrupts import Interruption, RunInterrupted, raising_at_once, stop_signals_caught
from ihlib.book.params import (
    check_parameters,
    declared_parameters,
    shared_parameters,
    with_local_model_checked,
)
from ihlib.book.places import (
    checked_model,
    embedded_models,
    model_places,
    parse_models,
    write_model_record,
)
from ihlib.book.records import BookRun, in_toc_order, load_run_record, save_run_record, save_timings, say, timing_table
from ihlib.book.toc import (
    chapter_name,
    chapter_notebooks,
    chapter_number,
    select_chapters,
)
from ihlib.model.errors import IHLibError
from ihlib.model.loading import (
    resolve_device,
)


def run_book(
    root: str | Path = ".",
    build_dir: str | Path = "_build",
    shared: dict[str, object] | None = None,
    only: list[str] | None = None,
    site: bool = True,
    kernel: str = "python3",
    progress: bool = True,
    *,
    other_models: list[str] | tuple[str, ...] = (),
    jobs: int | None = None,
) -> BookRun:
    """Execute the toc's chapters into `build_dir/source`, the claims on `other_models` into `build_dir/models/`,
    then build `build_dir/html`, with `jobs` chapters at a time (default: the number of cores); see the module
    docstring."""
    root, build_dir = Path(root).resolve(), Path(build_dir).resolve()
    check_build_dir(root, build_dir)
    workers = check_jobs(jobs)
    shared = with_local_model_checked(dict(shared or {}))
    if "device" in shared:
        resolve_device(shared["device"])  # CUDA on a CPU-only torch fails here, before any chapter runs
    notebooks = chapter_notebooks(root)
    declared = {chapter_name(nb): declared_parameters(root / nb) for nb in notebooks}
    check_parameters(shared, declared)
    selected = select_chapters(notebooks, only)
    places = model_places(build_dir, shared.get("model_name"), [checked_model(m) for m in other_models])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    on_model = [nb for nb in selected if "model_name" in declared[chapter_name(nb)]]
    gathering = gathering_pages(notebooks, selected, on_model, declared)
    model_jobs = longest_first(
        [
            chapter_job(root, place, nb, shared, declared[chapter_name(nb)], date)
            for nb in on_model
            for place in places
            if place.site or chapter_number(chapter_name(nb)) is not None
        ],
        previous_seconds(build_dir),
    )
    gathering_jobs = [chapter_job(root, places[0], nb, shared, declared[chapter_name(nb)], date) for nb in gathering]
    claim_build_dir(build_dir)
    with build_lock(build_dir), stop_signals_caught(Interruption()) as interruption:
        with raising_at_once(interruption):
            if not only:
                clean_build(build_dir)
            prepare_source(root, build_dir / SOURCE_DIR)
        run = BookRun()
        record = load_run_record(build_dir)
        bar = tqdm(total=len(model_jobs) + len(gathering), desc="book", unit="chapter", disable=not progress or None)
        start = time.perf_counter()
        with kernel_environment(score_cache=build_dir / CACHE_DIR, threads=kernel_threads(workers)):
            for place in places:
                write_model_record(place)
            execute_jobs(model_jobs, workers, kernel, run, record, bar, progress, interruption)
            if run.failed is None and not interruption.requested:
                execute_jobs(gathering_jobs, workers, kernel, run, record, bar, progress, interruption)
        bar.close()
        run.chapter_seconds = in_toc_order(run.chapter_seconds, notebooks, places)
        for place in places:
            shutil.rmtree(place.running, ignore_errors=True)
        if (run.failed is not None or interruption.requested) and (build_dir / HTML_DIR).exists():
            shutil.rmtree(build_dir / HTML_DIR)
            run.removed_site = build_dir / HTML_DIR
        save_run_record(build_dir, in_toc_order(record, notebooks, places))
        try:
            with raising_at_once(interruption):
                if run.failed is None and site:
                    copy_unexecuted(root, build_dir / SOURCE_DIR, [nb for nb in notebooks if nb not in selected])
                    say(progress, f"site: building {build_dir / HTML_DIR} with Jupyter Book")
                    run.site_seconds = build_site(build_dir / SOURCE_DIR, build_dir / HTML_DIR)
                    run.index_html = build_dir / HTML_DIR / "index.html"
        except RunInterrupted:
            shutil.rmtree(build_dir / HTML_DIR, ignore_errors=True)  # a half-built site
            raise
        finally:
            run.wall_seconds = time.perf_counter() - start
            save_timings(build_dir, run)
    return run


def gathering_pages(
    notebooks: list[Path], selected: list[Path], on_model: list[Path], declared: dict[str, dict[str, object]]
) -> list[Path]:
    """The pages without `model_name` (they gather the verdicts) to run: those selected, and all of them whenever a
    chapter runs, so that they never show a verdict older than a chapter's."""
    gathering = [nb for nb in notebooks if "model_name" not in declared[chapter_name(nb)]]
    return gathering if on_model else [nb for nb in gathering if nb in selected]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the runner's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m ihlib.book",
        description="Execute the book's chapters with papermill and build the static site with Jupyter Book.",
    )
    parser.add_argument("--model", help="model_name for every chapter: a hub name (gpt2) or a local directory")
    parser.add_argument("--params", help="YAML file mapping parameter names to values")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="one parameter, value parsed as YAML"
    )
    parser.add_argument(
        "--only", nargs="+", action="extend", metavar="CHAPTER", help="run only these chapters (03_shuffling or 3)"
    )
    parser.add_argument("--build-dir", default="_build", help="build folder (default: _build)")
    parser.add_argument("--root", default=".", help="repository root holding _toc.yml (default: .)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel that runs the chapters")
    parser.add_argument("--no-site", action="store_true", help="execute the chapters only, skip the site")
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="A,B",
        help="also run the claims on these models (embedded names, hub names or local directories), comma-separated",
    )
    parser.add_argument(
        "--no-embedded",
        action="store_true",
        help="do not run the claims on the other embedded models (by default they all run)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="chapters run at once (default: the number of cores)"
    )
    return parser.parse_args(argv)


def other_models_of(args: argparse.Namespace) -> list[str]:
    """The models the claims also run on: every embedded model shipped here (unless `--no-embedded`), then
    `--models` in the order given; the site's own model is dropped later by `model_places`."""
    embedded = [] if args.no_embedded else embedded_models()
    return [*embedded, *[name for text in args.models for name in parse_models(text)]]


def main(argv: list[str] | None = None) -> int:
    """Run the book from the command line; return the exit status (1 when a chapter fails)."""
    args = parse_args(argv)
    try:
        shared = shared_parameters(args.params, args.param, args.model)
        run = run_book(
            args.root,
            args.build_dir,
            shared,
            args.only,
            site=not args.no_site,
            kernel=args.kernel,
            other_models=other_models_of(args),
            jobs=args.jobs,
        )
    except IHLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        print(
            f"interrupted by {stop.signal_name}: a chapter cut short reads 'interrupted' in run.json and its results "
            "hold only FAILED.json; the site was removed; run the book again to finish.",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stop.signal_name].value
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print()
    print(timing_table(run))
    if run.failed is not None:
        print(f"\n{run.failed}", file=sys.stderr)
        print(
            f"The chapters before it kept their executed notebooks and results; {run.failed.chapter} keeps its last "
            "good executed notebook, if any, and its verdict reads 'failed'.",
            file=sys.stderr,
        )
        if run.removed_site is not None:
            print(
                f"The runner removed the previous site {run.removed_site}: it no longer matched the results.",
                file=sys.stderr,
            )
        return 1
    if run.index_html is not None:
        print(f"\nSite: {run.index_html}")
    for failure in run.model_failures:
        print(f"\n{failure}", file=sys.stderr)
    return 1 if run.model_failures else 0
