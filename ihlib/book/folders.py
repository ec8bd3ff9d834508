"""The build folder's layout: where sources, executed pages, failures and the site go; preparing and cleaning them."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

from ihlib.book.toc import (
    chapter_name,
)
from ihlib.model.errors import BookError

SOURCE_DIR = "source"


HTML_DIR = "html"


RUNNING_DIR = "running"  # chapters being executed; moved into source/ only when they succeed


FAILED_DIR = "failed"  # the executed notebook of the last failed run of a chapter, with its error


RUN_RECORD = "run.json"


MODELS_DIR = "models"  # the claims run on the other models, one folder each: models/<label>/{book,results}/


CACHE_DIR = "cache"  # head scores shared by the chapters (IHLIB_SCORE_CACHE); kept between runs, keyed by weights


def prepare_source(root: Path, source: Path) -> None:
    """Copy `_config.yml`, `_toc.yml` and `book/` except notebooks from `root` into the build `source`."""
    source.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        if (root / name).is_file():
            shutil.copy2(root / name, source / name)
    ignore = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__")
    if (root / "book").is_dir():
        shutil.copytree(root / "book", source / "book", ignore=ignore, dirs_exist_ok=True)


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


def copy_unexecuted(root: Path, source: Path, notebooks: list[Path]) -> None:
    """Copy toc notebooks that have no executed version in `source` as they are, with a warning."""
    for notebook in notebooks:
        if not (source / notebook).is_file():
            print(f"warning: {chapter_name(notebook)} was never executed here; the site shows it without outputs.")
            shutil.copy2(root / notebook, source / notebook)
