"""Run the book: execute every chapter with papermill, then build the static HTML site with Jupyter Book.

Usage (from the repository root)::

    python -m ihlib.book [--model NAME_OR_DIR] [--models A,B] [--no-embedded] [--jobs N]
                         [--params F.yml] [--param name=value ...]
                         [--only CHAPTER ...] [--build-dir _build] [--root .] [--no-site]

Conventions every chapter follows:

- `_toc.yml` and `_config.yml` sit at the repository root and every page lives in `book/`: `book/intro.md`,
  the chapters `book/NN_short_name.ipynb` (`00_finding_heads`, `01_diagonal`, `02_common_subspace`,
  `03_shuffling`, `04_projection`), and the gathering pages `book/across_models.ipynb` (the claims per model) and
  `book/conclusion.ipynb` (the saved verdicts). The runner executes the notebooks the toc lists and copies
  everything else in `book/` (markdown pages, figures).
- A chapter is stored without outputs and has one cell tagged `parameters` declaring the shared names
  `model_name = None` (None: the embedded default; a hub name such as "gpt2"; or a local directory),
  `device = "auto"`, `seed = 0` and `output_dir = "results/NN_short_name"`, then its own names.
  It runs alone: `papermill book/03_shuffling.ipynb out.ipynb -p model_name gpt2 -p n_exp 20`.
  A page that declares no `model_name` gathers what the chapters saved: it runs after all of them.
- Models: the chapters run on the site's model (`--model`, default the embedded default) and their pages make the
  site; the numbered chapters (the claims, `NN_*`) also run on every other embedded model (unless `--no-embedded`) and
  on each model of `--models a,b` (embedded names, hub names or local directories; repeatable), each in its own
  folder `models/<label>/` (no site pages), for the across-models page.
- Shared parameters: `--params F.yml` (a YAML mapping), then `--param name=value` (value parsed as YAML,
  repeatable), then `--model X` (sets `model_name`), later ones winning. Each notebook receives only the
  names it declares; a name that no chapter declares is an error (typo protection). `output_dir` is per
  chapter and cannot be shared. The other models get the same parameters with their own `model_name`.
- Parallel: `--jobs N` chapters run at once (default: the number of cores), each kernel's torch with
  cores / N threads; the chapters that the last run timed start longest first, the others chapter by chapter,
  each on every model.
  Kernels get `TQDM_DISABLE=1`, `PYTHONWARNINGS=ignore` and `TRANSFORMERS_VERBOSITY=error`: no progress bar or
  warning reaches a page (the runner shows its own progress), and `IHLIB_SCORE_CACHE=_build/cache`, so that the
  chapters compute the head scores of one model and setting once (`ihlib.score_cache`).
- Layout under the build folder (`_build` by default); `book/` is never written to:

      _build/source/                   the Jupyter Book source: _config.yml, _toc.yml, book/ pages and assets
      _build/source/book/NN_*.ipynb    the executed chapters, each with a provenance cell after its title (date,
                                       model, parameters; download links to its saved JSON and NPZ files and to
                                       the executed notebook); moved here only when the chapter succeeds
      _build/source/results/NN_*/      what each chapter saves: notebooks run with cwd = _build/source,
                                       as they would from the repository root (so `../results/...` works
                                       from a page in book/); emptied before the chapter runs
      _build/source/results/model.json the site model's label and model_name (one per model's results/)
      _build/models/<label>/           another model: book/NN_*.ipynb executed, results/NN_*/ saved, failed/
      _build/failed/NN_*.ipynb         the executed notebook of a chapter whose last run failed, with the error
      _build/cache/                    head scores keyed by the model's weights and the options (kept between runs)
      _build/html/index.html           the site; figures under _build/html/_images, data under _build/html/_downloads
      _build/timings.json              seconds per chapter (alone), for the site, and the wall-clock total
      _build/run.json                  per executed page: status, date, model and parameters of the run that built it

- A run without `--only` first removes what a previous run left (`source/`, `models/`, `html/`, `failed/`, the
  records). With `--only` (repeatable), the other chapters keep their previous executed version (a chapter never
  executed is shown without outputs, with a warning).
- Parameters are checked before anything runs: a value must have the type of the chapter's default
  (`n_exp=1e3` becomes 1000 where the default is an int), and a local `--model` or `--models` directory must hold
  a GPT-2 (it is passed to the chapters as an absolute path).
- A chapter failing on the site's model stops the run: no further chapter starts (those running finish), its name
  and error are printed, the executed notebooks and results of the other chapters stay, the site is not built and
  a previous `html/` is removed, and the exit status is 1. The failed chapter keeps its last good executed
  notebook; its results folder loses `verdict.json` and gets `FAILED.json`, so the conclusion shows "failed" for
  it instead of an old verdict. A chapter failing on another model gets the same marker in that model's folder
  (the across-models page shows "failed"); the run goes on and builds the site, and the exit status is 1.
- A claim chapter run on a model without the heads it is about stops at its gate (`ihlib.gate.require_heads`
  raises `ClaimNotTested` after saving the verdict "not tested"): that chapter has finished, not failed; its page
  keeps the reason and ends with a note instead of the experiments.
- Parameters are parsed and typed by `ihlib.book_params`; executed pages are tidied and get their provenance
  cell from `ihlib.book_pages`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import papermill
import yaml
from tqdm import tqdm

from ihlib.across import MODEL_RECORD
from ihlib.book_pages import add_provenance_cell, data_links_text, page_record, provenance_text, tidy_stream_outputs
from ihlib.book_params import (
    check_parameters,
    declared_parameters,
    parameters_for,
    shared_parameters,
    typed_parameters,
    with_local_model_checked,
)
from ihlib.errors import BookError, ClaimNotTested, IHLibError
from ihlib.gate import finish_stopped_notebook
from ihlib.models import (
    DEFAULT_EMBEDDED,
    DEFAULT_MODEL_NAME,
    EMBEDDED_MODELS,
    embedded_dir,
    resolve_device,
)
from ihlib.score_cache import CACHE_ENV
from ihlib.verdicts import FAILED_MARKER

SOURCE_DIR = "source"
HTML_DIR = "html"
RUNNING_DIR = "running"  # chapters being executed; moved into source/ only when they succeed
FAILED_DIR = "failed"  # the executed notebook of the last failed run of a chapter, with its error
RUN_RECORD = "run.json"
MODELS_DIR = "models"  # the claims run on the other models, one folder each: models/<label>/{book,results}/
CACHE_DIR = "cache"  # head scores shared by the chapters (IHLIB_SCORE_CACHE); kept between runs, keyed by weights
KERNEL_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # model-loading bars are noise on a page
    "TQDM_DISABLE": "1",  # progress bars stay on the runner's terminal, never on a page
    "TRANSFORMERS_VERBOSITY": "error",  # transformers logs its warnings (config checks) to stderr, not as warnings
    "PYTHONWARNINGS": "ignore",  # warnings are for whoever calls ihlib; a rendered page shows results only
}


class ChapterFailed(RuntimeError):
    """A chapter raised while it was executed; carries the chapter name, the error in one line and the notebook."""

    def __init__(self, chapter: str, error: str, notebook: Path, cell: str = ""):
        self.chapter, self.error, self.notebook, self.cell = chapter, error, notebook, cell
        super().__init__(chapter, error)

    def __str__(self) -> str:
        """The chapter, the cell and the error, then where the executed notebook with the error is."""
        where = f" in cell {self.cell}" if self.cell else ""
        return f"Chapter {self.chapter} failed{where}: {self.error}\nExecuted notebook with the error: {self.notebook}"


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


def toc_files(root: Path) -> list[str]:
    """Return the `file` entries of `root/_toc.yml` in reading order (root page first), without suffix."""
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise BookError(f"No _toc.yml in {root}: run from the repository root or pass --root.")
    toc = yaml.safe_load(toc_path.read_text()) or {}
    if "root" not in toc:
        raise BookError(f"{toc_path} has no 'root' entry (Jupyter Book 1 format: jb-book).")
    return [str(toc["root"]), *_toc_entries(toc)]


def _toc_entries(node: dict) -> list[str]:
    """Collect `file` values of the toc's parts, chapters and sections, depth first, in order."""
    files = []
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []) or []:
            if "file" in child:
                files.append(str(child["file"]))
            files.extend(_toc_entries(child))
    return files


def page_path(root: Path, entry: str) -> Path:
    """Return the file of toc `entry` under `root` (`.ipynb` or `.md`), or raise naming the entry."""
    for suffix in (".ipynb", ".md"):
        path = root / f"{entry}{suffix}"
        if path.is_file():
            return path
    raise BookError(f"The toc lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists in {root}.")


def chapter_notebooks(root: Path) -> list[Path]:
    """Return the notebooks the toc lists, in toc order, relative to `root`."""
    pages = [page_path(root, entry) for entry in toc_files(root)]
    return [p.relative_to(root) for p in pages if p.suffix == ".ipynb"]


def chapter_name(notebook: Path) -> str:
    """Return a chapter's name: its file stem, e.g. `00_finding_heads`."""
    return Path(notebook).stem


def select_chapters(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Return the notebooks named in `only` (stem like `03_shuffling` or number like `3`), all when None."""
    if not only:
        return list(notebooks)
    by_name = {chapter_name(nb): nb for nb in notebooks}
    chosen = []
    for wanted in only:
        number = _number_of(wanted)
        matches = [
            nb for name, nb in by_name.items() if name == wanted or (number is not None and _number_of(name) == number)
        ]
        if not matches:
            raise BookError(f"--only {wanted}: no such chapter. Chapters: {', '.join(by_name)}.")
        chosen.extend(nb for nb in matches if nb not in chosen)
    return [nb for nb in notebooks if nb in chosen]


def _number_of(name: str) -> int | None:
    """Return the leading chapter number of `03_shuffling` or `3`, or None when there is none."""
    prefix = name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else None


def prepare_source(root: Path, source: Path) -> None:
    """Copy `_config.yml`, `_toc.yml` and `book/` except notebooks from `root` into the build `source`."""
    source.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        if (root / name).is_file():
            shutil.copy2(root / name, source / name)
    ignore = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__")
    if (root / "book").is_dir():
        shutil.copytree(root / "book", source / "book", ignore=ignore, dirs_exist_ok=True)


def run_chapter(notebook: Path, output: Path, parameters: dict[str, object], cwd: Path, kernel: str) -> float:
    """Execute `notebook` into `output` with papermill in `cwd`; return seconds, raise ChapterFailed on error.

    A chapter stopped by its gate (`ClaimNotTested`: the model lacks the heads) has finished: its page says why.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            resources={"metadata": {"path": str(cwd)}},  # the kernel's cwd; papermill's cwd= would chdir this process
            progress_bar=False,
            extra_arguments=["--log-level=CRITICAL"],  # keep ipykernel's own log lines out of the run's log
        )
    except papermill.PapermillExecutionError as err:
        if err.ename != ClaimNotTested.__name__:
            cell = f"In [{err.exec_count}]"
            raise ChapterFailed(chapter_name(notebook), f"{err.ename}: {err.evalue}", output, cell) from err
        finish_stopped_notebook(output)
    except Exception as err:
        raise ChapterFailed(chapter_name(notebook), f"{type(err).__name__}: {err}", output) from err
    tidy_stream_outputs(output)
    return time.perf_counter() - start


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


def build_site(source: Path, html: Path) -> float:
    """Build the HTML site from `source` into `html` with Jupyter Book (no execution); return seconds."""
    from jupyter_book.sphinx import build_sphinx

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecations hit by sphinx_external_toc's gc scan
        result = build_sphinx(
            str(source),
            str(html),
            noconfig=True,
            path_config=str(source / "_config.yml"),
            confoverrides={"external_toc_path": (source / "_toc.yml").as_posix(), "latex_individualpages": False},
            builder="html",
            freshenv=True,
            quiet=True,
        )
    if isinstance(result, Exception) or result:
        raise RuntimeError(f"Jupyter Book failed to build the site from {source} (see the messages above).")
    return time.perf_counter() - start


def check_build_dir(root: Path, build_dir: Path) -> None:
    """Raise when `build_dir` is the repository, one of its parents, or inside `book/` (resolved paths)."""
    if root.is_relative_to(build_dir) or build_dir.is_relative_to(root / "book"):
        raise BookError(
            f"--build-dir {build_dir} would write into the repository or book/: choose a folder such as _build."
        )


def clean_build(build_dir: Path) -> None:
    """Remove what a previous full run left in `build_dir` (source, other models, html, doctrees, timings); the
    head-score cache stays (its entries are keyed by the weights and the options)."""
    for name in (SOURCE_DIR, MODELS_DIR, HTML_DIR, RUNNING_DIR, FAILED_DIR, ".doctrees", "jupyter_execute"):
        shutil.rmtree(build_dir / name, ignore_errors=True)
    for name in ("timings.json", RUN_RECORD):
        (build_dir / name).unlink(missing_ok=True)


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
    gathering = [nb for nb in selected if nb not in on_model]
    model_jobs = longest_first(
        [
            chapter_job(root, place, nb, shared, declared[chapter_name(nb)], date)
            for nb in on_model
            for place in places
            if place.site or _number_of(chapter_name(nb)) is not None
        ],
        previous_seconds(build_dir),
    )
    gathering_jobs = [chapter_job(root, places[0], nb, shared, declared[chapter_name(nb)], date) for nb in gathering]
    if not only:
        clean_build(build_dir)
    prepare_source(root, build_dir / SOURCE_DIR)
    run = BookRun()
    record = load_run_record(build_dir)
    bar = tqdm(total=len(model_jobs) + len(gathering), desc="book", unit="chapter", disable=None if progress else True)
    start = time.perf_counter()
    with kernel_environment(score_cache=build_dir / CACHE_DIR, threads=kernel_threads(workers)):
        for place in places:
            write_model_record(place)
        _execute(model_jobs, workers, kernel, run, record, bar, progress)
        if run.failed is None:
            _execute(gathering_jobs, workers, kernel, run, record, bar, progress)
    bar.close()
    run.chapter_seconds = _in_toc_order(run.chapter_seconds, notebooks, places)
    for place in places:
        shutil.rmtree(place.running, ignore_errors=True)
    if run.failed is not None and (build_dir / HTML_DIR).exists():
        shutil.rmtree(build_dir / HTML_DIR)
        run.removed_site = build_dir / HTML_DIR
    if run.failed is None and site:
        _copy_unexecuted(root, build_dir / SOURCE_DIR, [nb for nb in notebooks if nb not in selected])
        _say(progress, f"site: building {build_dir / HTML_DIR} with Jupyter Book")
        run.site_seconds = build_site(build_dir / SOURCE_DIR, build_dir / HTML_DIR)
        run.index_html = build_dir / HTML_DIR / "index.html"
    run.wall_seconds = time.perf_counter() - start
    _save_timings(build_dir, run)
    save_run_record(build_dir, _in_toc_order(record, notebooks, places))
    return run


def previous_seconds(build_dir: Path) -> dict[str, float]:
    """Seconds per job of the last run that recorded them (`timings.json`), empty when there is none."""
    path = build_dir / "timings.json"
    return json.loads(path.read_text()).get("chapters", {}) if path.is_file() else {}


def longest_first(jobs: list[ChapterJob], seconds: dict[str, float]) -> list[ChapterJob]:
    """Jobs ordered to finish early on several workers: those the last run timed, longest first, then the others in
    their given order (chapter by chapter, each on every model, so that one chapter's runs overlap)."""
    return sorted(jobs, key=lambda job: -seconds.get(job.name, 0.0))


def _in_toc_order(record: dict[str, object], notebooks: list[Path], places: list[ModelPlace]) -> dict[str, object]:
    """`record`'s entries by page in toc order, the site model's first, then each other model's."""
    names = [place.job_name(nb) for place in places for nb in notebooks]
    return {name: record[name] for name in names if name in record}


@dataclass(frozen=True)
class ModelPlace:
    """Where one model's chapters run: the folder they run in (`book/` and `results/` below it), and whether it
    is the site's model (its pages become the site) or another model (its claims feed the across-models page)."""

    label: str
    model_name: str | None
    workdir: Path
    running: Path
    failed: Path
    site: bool

    def job_name(self, notebook: Path) -> str:
        """`03_shuffling` for the site's model, `ihlib-language/03_shuffling` for another model."""
        return chapter_name(notebook) if self.site else f"{self.label}/{chapter_name(notebook)}"


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


def model_short_name(model_name: str | None) -> str:
    """A short name for a model, used in folder names and tables: the embedded name, a local folder's name, or the
    hub name with `/` written `--`."""
    if model_name is None or model_name == DEFAULT_MODEL_NAME:
        return DEFAULT_EMBEDDED
    if model_name in EMBEDDED_MODELS:
        return model_name
    path = Path(model_name)
    return path.name if path.is_dir() else model_name.replace("/", "--")


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names denote the same model: the same embedded folder, local folder or hub name."""
    return _model_identity(a) == _model_identity(b)


def _model_identity(name: str | None) -> str:
    """The resolved folder of an embedded or local model, else the hub name."""
    folder = embedded_dir(name) or Path(name)
    return str(folder.resolve()) if folder.is_dir() else str(name)


def model_places(build_dir: Path, site_model: str | None, others: list[str]) -> list[ModelPlace]:
    """The site's model at `build_dir/source`, then each other model (not the site's, each once) at
    `build_dir/models/<label>`; two models with one label get `-2`, `-3` appended."""
    places = [
        ModelPlace(
            model_short_name(site_model),
            site_model,
            build_dir / SOURCE_DIR,
            build_dir / RUNNING_DIR,
            build_dir / FAILED_DIR,
            site=True,
        )
    ]
    for model in others:
        if any(same_model(model, place.model_name) for place in places):
            continue
        label = _unique_label(model_short_name(model), {place.label for place in places})
        workdir = build_dir / MODELS_DIR / label
        places.append(ModelPlace(label, model, workdir, workdir / RUNNING_DIR, workdir / FAILED_DIR, site=False))
    return places


def _unique_label(label: str, taken: set[str]) -> str:
    """`label`, or `label-2`, `label-3`, ... : the first that is not `taken`."""
    candidates = [label, *(f"{label}-{i}" for i in range(2, len(taken) + 3))]
    return next(candidate for candidate in candidates if candidate not in taken)


def checked_model(model: str) -> str:
    """Return an embedded or hub name as it is, and a local directory as an absolute path after checking that it
    holds a GPT-2."""
    return str(with_local_model_checked({"model_name": model})["model_name"])


def embedded_models() -> list[str]:
    """The short names of the embedded models shipped in this checkout, the default first."""
    names = [DEFAULT_EMBEDDED, *[name for name in EMBEDDED_MODELS if name != DEFAULT_EMBEDDED]]
    return [name for name in names if (EMBEDDED_MODELS[name] / "config.json").is_file()]


def parse_models(text: str) -> list[str]:
    """Split `--models a,b` into names (empty parts dropped); an empty list is an error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise BookError(
            f"--models {text!r} names no model: give names, hub names or local directories, comma-separated."
        )
    return names


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


def write_model_record(place: ModelPlace) -> None:
    """Write `results/model.json` at the place: the model's label, its `model_name`, and whether it is the site's."""
    results = place.workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    record = {"label": place.label, "model_name": place.model_name, "site": place.site}
    (results / MODEL_RECORD).write_text(json.dumps(record, indent=1))


def _execute(
    jobs: list[ChapterJob],
    workers: int,
    kernel: str,
    run: BookRun,
    record: dict[str, dict],
    bar: tqdm,
    progress: bool,
) -> None:
    """Run `jobs`, `workers` at a time, in order; record each outcome in `run` and `record`. A failure on the site's
    model stops the start of further jobs (those running finish); a failure on another model is recorded only."""
    pending, running = list(jobs), {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            while pending and len(running) < workers and run.failed is None:
                job = pending.pop(0)
                _say(progress, f"{job.name}: running with {job.parameters or 'its defaults'}")
                running[pool.submit(publish_chapter, job, kernel=kernel)] = job
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                _record_outcome(running.pop(future), future, run, record, progress)
                bar.update()


def _record_outcome(job: ChapterJob, future: Future, run: BookRun, record: dict[str, dict], progress: bool) -> None:
    """Store a finished job's seconds or failure in `run` and its page record in `record`; say it."""
    try:
        seconds = future.result()
    except ChapterFailed as failure:
        record[job.name] = {**job.page, "status": "failed", "error": failure.error}
        _say(progress, f"{job.name}: FAILED ({failure.error})")
        if job.place.site:
            run.failed = run.failed or failure
        else:
            run.model_failures.append(failure)
        return
    run.chapter_seconds[job.name] = seconds
    record[job.name] = {**job.page, "status": "done", "seconds": round(seconds, 1)}
    _say(progress, f"{job.name}: done in {seconds:.1f} s")


def publish_chapter(job: ChapterJob, *, kernel: str) -> float:
    """Execute a job's notebook into its place's `running/`, then move it into the place's `book/` only on success;
    return seconds.

    The chapter's results folder is emptied first, so its files all come from this run. On success the notebook
    gets a provenance cell: which run built it, links to its saved data and to itself. On failure the executed
    notebook goes to the place's `failed/`, the chapter's `verdict.json` is removed and `FAILED.json` holds the
    error (the conclusion shows "failed"); the previous executed notebook stays as it was.
    """
    place, notebook = job.place, job.notebook
    running = place.running / notebook.name
    failed = place.failed / notebook.name
    results = place.workdir / "results" / chapter_name(notebook)
    shutil.rmtree(results, ignore_errors=True)
    failed.unlink(missing_ok=True)
    try:
        seconds = run_chapter(job.source, running, job.parameters, place.workdir, kernel)
    except ChapterFailed as failure:
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
    }
    (results / FAILED_MARKER).write_text(json.dumps({**marker, **page}, indent=1))


def load_run_record(build_dir: Path) -> dict[str, dict]:
    """Return the per-chapter records of `build_dir/run.json` (empty when there is none)."""
    path = build_dir / RUN_RECORD
    return json.loads(path.read_text()).get("chapters", {}) if path.is_file() else {}


def save_run_record(build_dir: Path, chapters: dict[str, dict]) -> None:
    """Write `build_dir/run.json`: for each executed page (toc order), its status, date, model and parameters."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / RUN_RECORD).write_text(json.dumps({"chapters": chapters}, indent=1, default=repr))


def _say(progress: bool, line: str) -> None:
    """Print a progress line above the progress bar (one line per event, readable in CI logs)."""
    if progress:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def _copy_unexecuted(root: Path, source: Path, notebooks: list[Path]) -> None:
    """Copy toc notebooks that have no executed version in `source` as they are, with a warning."""
    for notebook in notebooks:
        if not (source / notebook).is_file():
            print(f"warning: {chapter_name(notebook)} was never executed here; the site shows it without outputs.")
            shutil.copy2(root / notebook, source / notebook)


def _save_timings(build_dir: Path, run: BookRun) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
