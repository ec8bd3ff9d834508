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
      _build/source/book/NN_*.ipynb    the executed chapters (kept when a later chapter fails)
      _build/source/results/NN_*/      what each chapter saves: notebooks run with cwd = _build/source,
                                       as they would from the repository root (so `../results/...` works
                                       from a page in book/)
      _build/html/index.html           the site; notebook figures are files under _build/html/_images
      _build/timings.json              seconds per chapter and for the site

- A run without `--only` starts from a clean `source/` and `html/`. With `--only`, the other chapters keep
  their previous executed version (a chapter never executed is shown without outputs, with a warning).
- A failing chapter stops the run: its name and error are printed, the executed notebooks and results of
  the chapters before it stay, the site is not built, and the exit status is 1.
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
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill
import yaml
from tqdm import tqdm

from ihlib.errors import IHLibError

PER_CHAPTER_PARAMETERS = ("output_dir",)
SOURCE_DIR = "source"
HTML_DIR = "html"
KERNEL_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # model-loading bars are noise on a page
    "PYTHONWARNINGS": "ignore:IProgress not found",  # tqdm.auto without ipywidgets: static pages need none
}


class ChapterFailed(RuntimeError):
    """A chapter raised while it was executed; carries the chapter name and the error in one line."""

    def __init__(self, chapter: str, error: str, notebook: Path, cell: str = ""):
        self.chapter, self.error, self.notebook = chapter, error, notebook
        where = f" in cell {cell}" if cell else ""
        super().__init__(f"Chapter {chapter} failed{where}: {error}\nExecuted notebook with the error: {notebook}")


@dataclass
class BookRun:
    """What a run did: seconds per executed chapter (toc order), the site build time and the site's index."""

    chapter_seconds: dict[str, float] = field(default_factory=dict)
    site_seconds: float | None = None
    index_html: Path | None = None
    failed: ChapterFailed | None = None


def toc_files(root: Path) -> list[str]:
    """Return the `file` entries of `root/_toc.yml` in reading order (root page first), without suffix."""
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise IHLibError(f"No _toc.yml in {root}: run from the repository root or pass --root.")
    toc = yaml.safe_load(toc_path.read_text()) or {}
    if "root" not in toc:
        raise IHLibError(f"{toc_path} has no 'root' entry (Jupyter Book 1 format: jb-book).")
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
    raise IHLibError(f"The toc lists {entry!r} but neither {entry}.ipynb nor {entry}.md exists in {root}.")


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
        raise IHLibError(f"--param expects name=value with a Python identifier as name, got {text!r}.")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise IHLibError(f"--param {name}: the value {value!r} is not valid YAML ({err}).") from err


def load_params_file(path: str | Path) -> dict[str, object]:
    """Read a YAML mapping of parameter names to values from `path`."""
    path = Path(path)
    if not path.is_file():
        raise IHLibError(f"Parameter file {path} does not exist.")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise IHLibError(f"Parameter file {path} must be a YAML mapping of parameter names to values.")
    return params


def shared_parameters(
    params_file: str | Path | None = None, param_args: list[str] | tuple[str, ...] = (), model: str | None = None
) -> dict[str, object]:
    """Merge the parameter file, then `--param` values, then `--model` (later wins) into one mapping."""
    params = load_params_file(params_file) if params_file else {}
    params.update(parse_param(text) for text in param_args)
    if model is not None:
        params["model_name"] = model
    return params


def declared_parameters(notebook: Path) -> set[str]:
    """Return the names declared in the notebook's `parameters` cell (papermill's inspection)."""
    return set(papermill.inspect_notebook(str(notebook)))


def check_parameters(shared: dict[str, object], declared: dict[str, set[str]]) -> None:
    """Raise on shared names that no chapter declares, or that are per chapter; `declared` maps chapter -> names."""
    per_chapter = sorted(set(shared) & set(PER_CHAPTER_PARAMETERS))
    if per_chapter:
        raise IHLibError(
            f"{', '.join(per_chapter)} is set per chapter and cannot be shared; use --build-dir to move results."
        )
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(shared) - known)
    if unknown:
        raise IHLibError(
            f"No chapter declares the parameter(s) {', '.join(unknown)}. "
            f"Declared parameters: {', '.join(sorted(known - set(PER_CHAPTER_PARAMETERS)))}."
        )


def parameters_for(shared: dict[str, object], declared: set[str]) -> dict[str, object]:
    """Return the part of `shared` that a notebook declaring `declared` accepts."""
    return {name: value for name, value in shared.items() if name in declared}


def select_chapters(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Return the notebooks named in `only` (stem like `03_shuffling` or number like `3`), all when None."""
    if not only:
        return list(notebooks)
    by_name = {chapter_name(nb): nb for nb in notebooks}
    chosen = []
    for wanted in only:
        matches = [nb for name, nb in by_name.items() if name == wanted or _number_of(name) == _number_of(wanted)]
        if not matches:
            raise IHLibError(f"--only {wanted}: no such chapter. Chapters: {', '.join(by_name)}.")
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
        raise IHLibError(
            f"--build-dir {build_dir} would write into the repository or book/: choose a folder such as _build."
        )


def clean_build(build_dir: Path) -> None:
    """Remove what a previous full run left in `build_dir` (source, html, doctrees, timings); nothing else."""
    for name in (SOURCE_DIR, HTML_DIR, ".doctrees", "jupyter_execute"):
        shutil.rmtree(build_dir / name, ignore_errors=True)
    (build_dir / "timings.json").unlink(missing_ok=True)


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
    shared = dict(shared or {})
    notebooks = chapter_notebooks(root)
    declared = {chapter_name(nb): declared_parameters(root / nb) for nb in notebooks}
    check_parameters(shared, declared)
    selected = select_chapters(notebooks, only)
    if not only:
        clean_build(build_dir)
    source = build_dir / SOURCE_DIR
    prepare_source(root, source)
    run = BookRun()
    bar = tqdm(selected, desc="book", unit="chapter", disable=None if progress else True, file=sys.stderr)
    for index, notebook in enumerate(bar, start=1):
        name = chapter_name(notebook)
        params = parameters_for(shared, declared[name])
        bar.set_postfix_str(name)
        _say(progress, f"[{index}/{len(selected)}] {name}: running with {params or 'its defaults'}")
        try:
            run.chapter_seconds[name] = run_chapter(root / notebook, source / notebook, params, source, kernel)
        except ChapterFailed as failure:
            run.failed = failure
            break
        _say(progress, f"[{index}/{len(selected)}] {name}: done in {run.chapter_seconds[name]:.1f} s")
    bar.close()
    if run.failed is None and site:
        _copy_unexecuted(root, source, [nb for nb in notebooks if nb not in selected])
        _say(progress, f"site: building {build_dir / HTML_DIR} with Jupyter Book")
        run.site_seconds = build_site(source, build_dir / HTML_DIR)
        run.index_html = build_dir / HTML_DIR / "index.html"
    _save_timings(build_dir, run)
    return run


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
    parser.add_argument("--only", nargs="+", metavar="CHAPTER", help="run only these chapters (03_shuffling or 3)")
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
        print("The chapters before it kept their executed notebooks and results.", file=sys.stderr)
        return 1
    if run.index_html is not None:
        print(f"\nSite: {run.index_html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
