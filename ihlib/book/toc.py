"""The book's table of contents: the pages `_toc.yml` lists, the chapter notebooks, `--only` selection."""

from __future__ import annotations

from pathlib import Path

import yaml

from ihlib.model.errors import BookError


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
        number = chapter_number(wanted)
        matches = [
            nb
            for name, nb in by_name.items()
            if name == wanted or (number is not None and chapter_number(name) == number)
        ]
        if not matches:
            raise BookError(f"--only {wanted}: no such chapter. Chapters: {', '.join(by_name)}.")
        chosen.extend(nb for nb in matches if nb not in chosen)
    return [nb for nb in notebooks if nb in chosen]


def chapter_number(name: str) -> int | None:
    """Return the leading chapter number of `03_shuffling` or `3`, or None when there is none."""
    prefix = name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else None
