"""What the book runner does to an executed page: tidy its streams, and say which run built it and where its data is."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ihlib.model.loading import DEFAULT_EMBEDDED
from ihlib.report.across_models import MODEL_RECORD

TQDM_BAR = re.compile(r"\d+%\|[^|\n]*\| *\d+/\d+ \[")  # `shuffle QK: 40%|####      | 2/5 [00:01<00:02, 1.9it/s]`


def tidy_stream_outputs(notebook: Path) -> None:
    """Merge consecutive stream outputs per cell, apply carriage returns, and drop tqdm bars written to stderr (a
    progress bar made with an explicit `disable=False` ignores TQDM_DISABLE; it belongs on a terminal, not a page)."""
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
        if output.output_type == "stream" and output.name == "stderr":
            output.text = "".join(line for line in output.text.splitlines(True) if not TQDM_BAR.search(line))
    return [output for output in merged if output.output_type != "stream" or output.text.strip()]


def terminal_text(text: str) -> str:
    """Return `text` as a terminal shows it: each line keeps only what its last carriage return wrote."""
    return "\n".join(_last_rewrite(line) for line in text.split("\n"))


def _last_rewrite(line: str) -> str:
    """Return the last non-empty `\\r`-separated part of `line` (the whole line when it has no `\\r`)."""
    parts = [part for part in line.split("\r") if part]
    return parts[-1] if parts else ""


def page_record(parameters: dict[str, object], defaults: dict[str, object], date: str) -> dict[str, object]:
    """What built a page: the run's date, the model (None for a page without `model_name`) and the parameters."""
    if "model_name" not in defaults:
        label = None
    else:
        label = (
            parameters.get("model_name", defaults["model_name"]) or f"{DEFAULT_EMBEDDED} (the embedded default model)"
        )
    return {"date": date, "model": label, "parameters": parameters}


def provenance_text(page: dict[str, object]) -> str:
    """One Markdown line saying which run built a page: date, model and the parameters given (others: defaults)."""
    given = ", ".join(f"`{name}={value!r}`" for name, value in page["parameters"].items() if name != "model_name")
    params = f"parameters {given} (the others: the chapter's defaults)" if given else "the chapter's default parameters"
    model = f"model `{page['model']}` and " if page["model"] else ""
    return f"*Built by `python -m ihlib.book` on {page['date']} with {model}{params}.*"


DATA_SUFFIXES = (".json", ".npz")


def data_links_text(notebook: Path, results: Path) -> str:
    """Markdown that offers a chapter's saved data (JSON, NPZ under `results`) and its executed notebook for download,
    with links relative to the page (`book/NN.ipynb` beside `results/NN/`); empty of data links when none was saved."""
    files = sorted(
        p for p in results.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES and p.name != MODEL_RECORD
    )
    links = [_download(p.relative_to(results).as_posix(), f"../results/{results.name}/") for p in files]
    data = f"Its saved data: {', '.join(links)}. " if links else ""
    return f"\n\n{data}The executed notebook: {_download(notebook.name, '')}."


def _download(name: str, folder: str) -> str:
    """A MyST download link to `folder + name`, shown as `name` (Sphinx copies the file into the site)."""
    return f"{{download}}`{name} <{folder}{name}>`"


def add_provenance_cell(notebook: Path, text: str) -> None:
    """Insert a Markdown cell tagged `provenance` holding `text` after the notebook's first (title) cell."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(text, metadata={"tags": ["provenance"]}))
    nbformat.write(nb, notebook)
