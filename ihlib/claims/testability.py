"""The gate of a claim's chapter: does the model have the heads the claim is about? If not, record "not tested".

A chapter calls `require_heads` right after it finds the heads. When too few heads count (chapter 0's rule), it
saves the verdict "not tested" with the reason and raises `ClaimNotTested`, which stops the notebook. The book
runner then finishes the page (`finish_stopped_notebook`): the reason stays, the cells that needed the heads go.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from ihlib.claims.verdicts import Verdict, save_verdicts
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import FRACTION, MARGIN, count_threshold, counting_heads
from ihlib.model.errors import ClaimNotTested
from ihlib.model.validation import integer

KIND_NAMES = {"induction": "induction heads", "shifting": "shifting heads"}
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # papermill's banner cells that point at the failed cell


def missing_heads(
    scores: HeadScores, at_least: int = 1, *, fraction: float = FRACTION, margin: float = MARGIN
) -> list[str]:
    """One sentence per head kind with fewer than `at_least` counting heads: the count, the best score and the bar."""
    at_least = integer(at_least, "at_least", low=1)
    reasons = []
    for kind, name in KIND_NAMES.items():
        found = counting_heads(scores, kind, fraction=fraction, margin=margin)
        if len(found) < at_least:
            best = float(getattr(scores, kind).max())
            bar = count_threshold(scores, kind, fraction=fraction, margin=margin)
            reasons.append(
                f"{len(found)} {name} count ({at_least} needed): the best {kind} score is {best:.3f}, "
                f"the bar is {bar:.3f} (uniform-attention baseline {scores.uniform[kind]:.3f} + margin {margin})"
            )
    return reasons


def require_heads(
    scores: HeadScores,
    claims: list[str],
    output_dir: str | Path,
    *,
    at_least: int = 1,
    fraction: float = FRACTION,
    margin: float = MARGIN,
    model: str = "",
) -> None:
    """Return when at least `at_least` induction and shifting heads count; else save "not tested" verdicts for
    `claims` (judged on `model`) in `output_dir` and raise `ClaimNotTested` with the reason."""
    reasons = missing_heads(scores, at_least, fraction=fraction, margin=margin)
    if not reasons:
        return
    why = "; ".join(reasons) + "."
    text = f"The claim is about heads this model does not have: {why}"
    verdicts = [Verdict(claim, "not tested", text, caveat="not tested on this model", model=model) for claim in claims]
    save_verdicts(verdicts, output_dir)
    raise ClaimNotTested(
        f"Not tested on this model: {why} Chapter 0 shows every head's scores; the chapter stops here."
    )


def finish_stopped_notebook(path: Path) -> str:
    """Turn a notebook stopped by `ClaimNotTested` into a finished page; return the reason.

    Papermill's banner cells go; the gate cell keeps its other outputs and shows the reason as Markdown instead of
    a traceback; the cells after it are replaced by one Markdown cell that says why they did not run.
    """
    nb = nbformat.read(path, as_version=4)
    cells = [cell for cell in nb.cells if PAPERMILL_ERROR_TAG not in cell.metadata.get("tags", [])]
    gate = next(i for i, cell in enumerate(cells) if _stopped_here(cell))
    error = next(out for out in cells[gate].outputs if out.output_type == "error")
    reason = error.evalue
    cells[gate].outputs = [out for out in cells[gate].outputs if out.output_type != "error"]
    cells[gate].outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": f"**{reason}**"}))
    note = nbformat.v4.new_markdown_cell(
        "## Not tested on this model\n\n"
        "The cell above found too few heads of the kinds this claim is about. The rest of this chapter measures "
        "those heads, so it did not run. Its verdict, "
        '"not tested", is on the closing page. On a model with such heads (the embedded ones, or GPT-2) '
        "the chapter runs in full."
    )
    nb.cells = [*cells[: gate + 1], note]
    if "papermill" in nb.metadata:
        nb.metadata.papermill.exception = None  # finished on purpose: no failure to report
    nbformat.write(nb, path)
    return reason


def _stopped_here(cell: nbformat.NotebookNode) -> bool:
    """Whether `cell` is a code cell whose outputs hold the `ClaimNotTested` error."""
    outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
    return any(out.output_type == "error" and out.ename == ClaimNotTested.__name__ for out in outputs)
