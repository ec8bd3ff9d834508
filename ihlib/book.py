"""Run the book: execute every chapter with papermill, then build the static HTML site with Jupyter Book.

Usage (from the repository root)::

    python -m ihlib.book [--model NAME_OR_DIR] [--params F.yml] [--param name=value ...]
                         [--only CHAPTER ...] [--build-dir _build] [--root .] [--no-site]

Conventions every chapter follows:

- `_toc.yml` and `_config.yml` sit at the repository root and every page lives in `book/`: `book/intro.md`,
  the chapters `book/NN_short_name.ipynb` (`00_finding_heads`, `01_diagonal`, `02_common_subspace`,
  `03_shuffling`, `04_projection`) and `book/conclusion.ipynb` (it gathers the saved verdicts).
  The runner executes the notebooks the toc lists,
  in toc order, and copies everything else in `book/` (markdown pages, figures).
- A chapter is stored without outputs and has one cell tagged `parameters` declaring the shared names
  `model_name = None` (None: the embedded default; a hub name such as "gpt2"; or a local directory),
  `device = "auto"`, `seed = 0` and `output_dir = "results/NN_short_name"`, then its own names.
  It runs alone: `papermill book/03_shuffling.ipynb out.ipynb -p model_name gpt2 -p n_exp 20`.
- Shared parameters: `--params F.yml` (a YAML mapping), then `--param name=value` (value parsed as YAML,
  repeatable), then `--model X` (sets `model_name`), later ones winning. Each notebook receives only the
  names it declares; a name that no chapter declares is an error (typo protection). `output_dir` is per
  chapter and cannot be shared.
- Layout under the build folder (`_build` by default); `book/` is never written to:

      _build/source/                   the Jupyter Book source: _config.yml, _toc.yml, book/ pages and assets
      _build/source/book/NN_*.ipynb    the executed chapters, each with a provenance line (date, model, parameters)
                                       after its title; moved here only when the chapter succeeds
      _build/source/results/NN_*/      what each chapter saves: notebooks run with cwd = _build/source,
                                       as they would from the repository root (so `../results/...` works
                                       from a page in book/); emptied before the chapter runs
      _build/failed/NN_*.ipynb         the executed notebook of a chapter whose last run failed, with the error
      _build/html/index.html           the site; notebook figures are files under _build/html/_images
      _build/timings.json              seconds per chapter and for the site
      _build/run.json                  per executed page: status, date, model and parameters of the run that built it

- A run without `--only` first removes what a previous run left (`source/`, `html/`, `failed/`, the records).
  With `--only` (repeatable), the other chapters keep their previous executed version (a chapter never
  executed is shown without outputs, with a warning).
- Parameters are checked before anything runs: a value must have the type of the chapter's default
  (`n_exp=1e3` becomes 1000 where the default is an int), and a local `--model` directory must hold a GPT-2
  (it is passed to the chapters as an absolute path).
- A failing chapter stops the run: its name and error are printed, the executed notebooks and results of
  the chapters before it stay, the site is not built and a previous `html/` is removed, and the exit status is 1.
  The failed chapter keeps its last good executed notebook; its results folder loses `verdict.json` and gets
  `FAILED.json`, so the conclusion shows "failed" for it instead of an old verdict.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import papermill
import yaml
from tqdm import tqdm

from ihlib.errors import BookError, IHLibError, ParameterError
from ihlib.models import check_local_model, resolve_device
from ihlib.verdicts import FAILED_MARKER

PER_CHAPTER_PARAMETERS = ("output_dir",)
SOURCE_DIR = "source"
HTML_DIR = "html"
RUNNING_DIR = "running"  # chapters being executed; moved into source/ only when they succeed
FAILED_DIR = "failed"  # the executed notebook of the last failed run of a chapter, with its error
RUN_RECORD = "run.json"
KERNEL_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # model-loading bars are noise on a page
    "PYTHONWARNINGS": "ignore:IProgress not found",  # tqdm.auto without ipywidgets: static pages need none
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


def parse_param(text: str) -> tuple[str, object]:
    """Parse `name=value` into `(name, value)`, the value read as YAML (`n=3` -> 3, `m=null` -> None)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise BookError(f"--param expects name=value with a Python identifier as name, got {text!r}.")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise BookError(f"--param {name}: the value {value!r} is not valid YAML ({err}).") from err


def load_params_file(path: str | Path) -> dict[str, object]:
    """Read a YAML mapping of parameter names to values from `path`."""
    path = Path(path)
    if not path.is_file():
        raise BookError(f"Parameter file {path} does not exist.")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BookError(f"Parameter file {path} is not valid YAML{_yaml_position(err)}.") from err
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise BookError(f"Parameter file {path} must be a YAML mapping of parameter names to values.")
    return params


def _yaml_position(err: yaml.YAMLError) -> str:
    """Return " at line L, column C: problem" (1-based) for a PyYAML error, or ": message" when it has no mark."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return f": {problem}"
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def shared_parameters(
    params_file: str | Path | None = None, param_args: list[str] | tuple[str, ...] = (), model: str | None = None
) -> dict[str, object]:
    """Merge the parameter file, then `--param` values, then `--model` (later wins) into one mapping."""
    params = load_params_file(params_file) if params_file else {}
    params.update(parse_param(text) for text in param_args)
    if model is not None:
        params["model_name"] = model
    return params


def with_local_model_checked(shared: dict[str, object]) -> dict[str, object]:
    """Return `shared` with a `model_name` that is an existing local path made absolute (chapters run in the build
    folder), after checking that it holds a GPT-2; hub names and None pass unchanged."""
    model = shared.get("model_name")
    if not isinstance(model, str) or not Path(model).exists():
        return shared
    check_local_model(model)
    return {**shared, "model_name": str(Path(model).resolve())}


def declared_parameters(notebook: Path) -> dict[str, object]:
    """Return the names declared in the notebook's `parameters` cell with their defaults (None if not a literal)."""
    return {name: _literal(info["default"]) for name, info in papermill.inspect_notebook(str(notebook)).items()}


def _literal(source: str) -> object:
    """Return the Python literal written in `source`, or None when it is an expression."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return None


def check_parameters(shared: dict[str, object], declared: dict[str, dict[str, object]]) -> None:
    """Raise on shared names that no chapter declares, or that are per chapter; `declared` maps chapter -> names."""
    per_chapter = sorted(set(shared) & set(PER_CHAPTER_PARAMETERS))
    if per_chapter:
        raise BookError(
            f"{', '.join(per_chapter)} is set per chapter and cannot be shared; use --build-dir to move results."
        )
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(shared) - known)
    if unknown:
        raise BookError(
            f"No chapter declares the parameter(s) {', '.join(unknown)}. "
            f"Declared parameters: {', '.join(sorted(known - set(PER_CHAPTER_PARAMETERS)))}."
        )


def parameters_for(shared: dict[str, object], declared: set[str] | dict[str, object]) -> dict[str, object]:
    """Return the part of `shared` that a notebook declaring `declared` accepts."""
    return {name: value for name, value in shared.items() if name in declared}


def typed_parameters(params: dict[str, object], defaults: dict[str, object], *, chapter: str) -> dict[str, object]:
    """Return `params` with each value converted to the type of its default in `chapter` (see `typed_parameter`)."""
    return {name: typed_parameter(name, value, defaults[name], chapter=chapter) for name, value in params.items()}


TYPE_HINTS = {
    bool: "true or false",
    int: "an integer such as 20 or 1e3",
    float: "a number such as 0.5 or 1e-3",
    str: "a string (quote digits: '\"123\"')",
    list: "a list such as [2, 3]",
    tuple: "a list such as [2, 3]",
    dict: "a mapping such as {a: 1}",
}


def typed_parameter(name: str, value: object, default: object, *, chapter: str) -> object:
    """Return `value` as the type of `default` (text such as "1e3" read as a number; an integral number as an int
    where the default is an int), unchanged where the default is None; raise ParameterError naming both otherwise."""
    if default is None:
        return value
    kind = type(default)
    typed = _converted(value, kind)
    if typed is None:
        raise ParameterError(
            f"parameter {name}={value!r}: the default in {chapter} is {default!r} ({kind.__name__}), "
            f"so use {TYPE_HINTS.get(kind, f'a {kind.__name__}')}."
        )
    return typed


def _converted(value: object, kind: type) -> object | None:
    """Return `value` as an instance of `kind` where that loses nothing, else None."""
    if kind in (int, float):
        number = _as_number(value)
        if number is None or (kind is int and not float(number).is_integer()):
            return None
        return int(number) if kind is int else float(number)
    if kind in (list, tuple) and isinstance(value, list | tuple):
        return kind(value)
    return value if isinstance(value, kind) else None


def _as_number(value: object) -> int | float | None:
    """Return `value` if it is an int or float (not a bool), the float that text such as "1e3" spells, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


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
    """Execute `notebook` into `output` with papermill in `cwd`; return seconds, raise ChapterFailed on error."""
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with kernel_environment():
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=kernel,
                cwd=str(cwd),
                progress_bar=False,
                extra_arguments=["--log-level=CRITICAL"],  # keep ipykernel's own log lines out of the run's log
            )
    except papermill.PapermillExecutionError as err:
        cell = f"In [{err.exec_count}]"
        raise ChapterFailed(chapter_name(notebook), f"{err.ename}: {err.evalue}", output, cell) from err
    except Exception as err:
        raise ChapterFailed(chapter_name(notebook), f"{type(err).__name__}: {err}", output) from err
    tidy_stream_outputs(output)
    return time.perf_counter() - start


@contextlib.contextmanager
def kernel_environment() -> Iterator[None]:
    """Set KERNEL_ENV (appending to an existing PYTHONWARNINGS) for kernels started inside; restore after."""
    saved = {name: os.environ.get(name) for name in KERNEL_ENV}
    for name, value in KERNEL_ENV.items():
        os.environ[name] = f"{saved[name]},{value}" if name == "PYTHONWARNINGS" and saved[name] else value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tidy_stream_outputs(notebook: Path) -> None:
    """Merge consecutive stream outputs per cell and apply carriage returns: a progress bar keeps its last state."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merged_streams(cell.outputs)
    nbformat.write(nb, notebook)


def merged_streams(outputs: list) -> list:
    """Return `outputs` with consecutive streams of one name joined and their text shown as a terminal would."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if output.output_type == "stream" and previous is not None and previous.get("name") == output.name:
            previous.text += output.text
        else:
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = terminal_text(output.text)
    return merged


def terminal_text(text: str) -> str:
    """Return `text` as a terminal shows it: each line keeps only what its last carriage return wrote."""
    return "\n".join(_last_rewrite(line) for line in text.split("\n"))


def _last_rewrite(line: str) -> str:
    """Return the last non-empty `\\r`-separated part of `line` (the whole line when it has no `\\r`)."""
    parts = [part for part in line.split("\r") if part]
    return parts[-1] if parts else ""


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
    """Remove what a previous full run left in `build_dir` (source, html, doctrees, timings); nothing else."""
    for name in (SOURCE_DIR, HTML_DIR, RUNNING_DIR, FAILED_DIR, ".doctrees", "jupyter_execute"):
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
) -> BookRun:
    """Execute the toc's chapters into `build_dir/source`, then build `build_dir/html`; see the module docstring."""
    root, build_dir = Path(root).resolve(), Path(build_dir).resolve()
    check_build_dir(root, build_dir)
    shared = with_local_model_checked(dict(shared or {}))
    if "device" in shared:
        resolve_device(shared["device"])  # CUDA on a CPU-only torch fails here, before any chapter runs
    notebooks = chapter_notebooks(root)
    declared = {chapter_name(nb): declared_parameters(root / nb) for nb in notebooks}
    check_parameters(shared, declared)
    selected = select_chapters(notebooks, only)
    chapter_params = {
        name: typed_parameters(parameters_for(shared, defaults), defaults, chapter=name)
        for name, defaults in declared.items()
    }
    if not only:
        clean_build(build_dir)
    source = build_dir / SOURCE_DIR
    prepare_source(root, source)
    run = BookRun()
    record = load_run_record(build_dir)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    bar = tqdm(selected, desc="book", unit="chapter", disable=None if progress else True, file=sys.stderr)
    for index, notebook in enumerate(bar, start=1):
        name = chapter_name(notebook)
        params = chapter_params[name]
        page = page_record(params, declared[name], date)
        bar.set_postfix_str(name)
        _say(progress, f"[{index}/{len(selected)}] {name}: running with {params or 'its defaults'}")
        try:
            run.chapter_seconds[name] = publish_chapter(root, notebook, build_dir, params, kernel, page)
        except ChapterFailed as failure:
            run.failed = failure
            record[name] = {**page, "status": "failed", "error": failure.error}
            break
        record[name] = {**page, "status": "done", "seconds": round(run.chapter_seconds[name], 1)}
        _say(progress, f"[{index}/{len(selected)}] {name}: done in {run.chapter_seconds[name]:.1f} s")
    bar.close()
    shutil.rmtree(build_dir / RUNNING_DIR, ignore_errors=True)
    if run.failed is not None and (build_dir / HTML_DIR).exists():
        shutil.rmtree(build_dir / HTML_DIR)
        run.removed_site = build_dir / HTML_DIR
    if run.failed is None and site:
        _copy_unexecuted(root, source, [nb for nb in notebooks if nb not in selected])
        _say(progress, f"site: building {build_dir / HTML_DIR} with Jupyter Book")
        run.site_seconds = build_site(source, build_dir / HTML_DIR)
        run.index_html = build_dir / HTML_DIR / "index.html"
    _save_timings(build_dir, run)
    save_run_record(
        build_dir, {chapter_name(nb): record[chapter_name(nb)] for nb in notebooks if chapter_name(nb) in record}
    )
    return run


def publish_chapter(
    root: Path, notebook: Path, build_dir: Path, parameters: dict[str, object], kernel: str, page: dict[str, object]
) -> float:
    """Execute `notebook` into `build_dir/running/`, then move it into `source/` only on success; return seconds.

    The chapter's results folder is emptied first, so its files all come from this run. On failure the executed
    notebook goes to `build_dir/failed/`, the chapter's `verdict.json` is removed and `FAILED.json` holds the
    error (the conclusion shows "failed"); the previous executed notebook in `source/` stays as it was.
    """
    source = build_dir / SOURCE_DIR
    running = build_dir / RUNNING_DIR / notebook.name
    failed = build_dir / FAILED_DIR / notebook.name
    results = source / "results" / chapter_name(notebook)
    shutil.rmtree(results, ignore_errors=True)
    failed.unlink(missing_ok=True)
    try:
        seconds = run_chapter(root / notebook, running, parameters, source, kernel)
    except ChapterFailed as failure:
        failed.parent.mkdir(parents=True, exist_ok=True)
        if running.exists():
            os.replace(running, failed)
            failure.notebook = failed
        mark_failed(results, failure, page)
        raise
    add_provenance_cell(running, provenance_text(page))
    (source / notebook).parent.mkdir(parents=True, exist_ok=True)
    os.replace(running, source / notebook)
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


def page_record(parameters: dict[str, object], defaults: dict[str, object], date: str) -> dict[str, object]:
    """What built a page: the run's date, the model (None for a page without `model_name`) and the parameters."""
    if "model_name" not in defaults:
        label = None
    else:
        label = parameters.get("model_name", defaults["model_name"]) or "ihlib-default (the embedded default model)"
    return {"date": date, "model": label, "parameters": parameters}


def provenance_text(page: dict[str, object]) -> str:
    """One Markdown line saying which run built a page: date, model and the parameters given (others: defaults)."""
    given = ", ".join(f"`{name}={value!r}`" for name, value in page["parameters"].items() if name != "model_name")
    params = f"parameters {given} (the others: the chapter's defaults)" if given else "the chapter's default parameters"
    model = f"model `{page['model']}` and " if page["model"] else ""
    return f"*Built by `python -m ihlib.book` on {page['date']} with {model}{params}.*"


def add_provenance_cell(notebook: Path, text: str) -> None:
    """Insert a Markdown cell tagged `provenance` holding `text` after the notebook's first (title) cell."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(text, metadata={"tags": ["provenance"]}))
    nbformat.write(nb, notebook)


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
        "failed": None if run.failed is None else {"chapter": run.failed.chapter, "error": run.failed.error},
    }
    (build_dir / "timings.json").write_text(json.dumps(record, indent=1))


def timing_table(run: BookRun) -> str:
    """Return a plain-text table of seconds per chapter, the site build and the total."""
    rows = [(name, f"{seconds:8.1f}") for name, seconds in run.chapter_seconds.items()]
    if run.failed is not None:
        rows.append((run.failed.chapter, "  FAILED"))
    if run.site_seconds is not None:
        rows.append(("site (Jupyter Book)", f"{run.site_seconds:8.1f}"))
    total = sum(run.chapter_seconds.values()) + (run.site_seconds or 0.0)
    rows.append(("total", f"{total:8.1f}"))
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the book from the command line; return the exit status (1 when a chapter fails)."""
    args = parse_args(argv)
    try:
        shared = shared_parameters(args.params, args.param, args.model)
        run = run_book(args.root, args.build_dir, shared, args.only, site=not args.no_site, kernel=args.kernel)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
