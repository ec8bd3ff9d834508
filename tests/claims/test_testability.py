"""The gate of a claim's chapter: on a model without the heads a claim is about, "not tested" and a finished page."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import random_gpt2, write_book
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ihlib.book.cli import main
from ihlib.claims.testability import missing_heads, require_heads
from ihlib.claims.verdicts import load_verdicts
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import count_threshold
from ihlib.model.errors import ClaimNotTested, IHLibError

pytestmark = pytest.mark.slow  # executes notebooks or draws figures

REPO = Path(__file__).resolve().parents[2]
CLAIM_CHAPTERS = ("01_diagonal", "02_common_subspace", "03_shuffling", "04_projection")
FLAT = 0.03  # every head near the uniform-attention baseline: nothing stands out


def scores_with(best_induction: float, best_shifting: float) -> HeadScores:
    """Scores `(3, 4)` near uniform attention except one head of each kind at the given best score."""
    induction, shifting = np.full((3, 4), FLAT), np.full((3, 4), FLAT)
    induction[2, 1], shifting[1, 0] = best_induction, best_shifting
    return HeadScores(induction, shifting)


def test_the_gate_passes_when_a_head_of_each_kind_counts(tmp_path):
    """With one IH and one shifting head clearly above the bar, nothing is saved and nothing is raised."""
    scores = scores_with(0.9, 0.8)
    assert missing_heads(scores) == []
    require_heads(scores, ["Claim X"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_without_induction_heads_the_claim_is_not_tested_and_the_reason_names_the_numbers(tmp_path):
    """No head clears the bar for IHs: verdict "not tested" per claim is saved, the error names best score and bar."""
    scores = scores_with(FLAT + 0.05, 0.8)
    bar = count_threshold(scores, "induction")
    assert bar == pytest.approx(scores.uniform["induction"] + 0.1)
    with pytest.raises(ClaimNotTested, match=rf"0 induction heads count \(1 needed\).*{FLAT + 0.05:.3f}.*{bar:.3f}"):
        require_heads(scores, ["Claim 3 (QK)", "Claim 3 (OV)"], tmp_path)
    verdicts = load_verdicts(tmp_path / "verdict.json")
    assert [(v.claim, v.verdict) for v in verdicts] == [("Claim 3 (QK)", "not tested"), ("Claim 3 (OV)", "not tested")]
    assert "shifting" not in verdicts[0].text
    assert isinstance(ClaimNotTested("x"), IHLibError)


def test_at_least_counts_heads_of_each_kind():
    """`at_least=2` with one IH and one shifting head reports both kinds as missing."""
    reasons = missing_heads(scores_with(0.9, 0.8), at_least=2)
    assert [r.split(" count")[0] for r in reasons] == ["1 induction heads", "1 shifting heads"]


def gated_chapter(best_induction: float) -> nbformat.NotebookNode:
    """A chapter whose second cell runs the gate on scores with the given best IH score; later cells must not run."""
    setup = (
        "import numpy as np\nfrom ihlib.claims.testability import require_heads\n"
        "from ihlib.heads.scoring import HeadScores\n"
        f"induction = np.full((3, 4), {FLAT})\ninduction[2, 1] = best_induction\n"
        f"shifting = np.full((3, 4), {FLAT})\nshifting[1, 0] = 0.8\n"
        "print('scores found')\nrequire_heads(HeadScores(induction, shifting), ['Claim 9'], output_dir)"
    )
    return new_notebook(
        cells=[
            new_markdown_cell("# 01_gated"),
            new_code_cell(
                f'model_name = None\nseed = 0\noutput_dir = "results/01_gated"\nbest_induction = {best_induction}',
                metadata={"tags": ["parameters"]},
            ),
            new_code_cell(setup),
            new_markdown_cell("## Needs the heads"),
            new_code_cell(
                "from pathlib import Path\nimport json\n"
                "Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
                "Path(output_dir, 'verdict.json').write_text(json.dumps({'claim': 'Claim 9', 'verdict': 'supported', "
                "'text': 'ran'}))"
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


@pytest.fixture
def gated_book(tmp_path: Path) -> Path:
    """A repository root whose one chapter is gated."""
    return write_book(tmp_path / "repo", {"01_gated": gated_chapter(0.9)})


def run_gated(root: Path, build: Path, best_induction: float) -> int:
    """Run the gated book without a site, one job, with the given best IH score."""
    argv = ["--root", str(root), "--build-dir", str(build), "--no-site", "--no-embedded", "--jobs", "1"]
    return main([*argv, "--param", f"best_induction={best_induction}"])


def test_a_gated_chapter_finishes_with_not_tested_and_a_clean_page(gated_book, tmp_path):
    """The runner counts a chapter stopped by its gate as done: exit 0, verdict "not tested", and the page keeps the
    gate cell's own output and the reason, shows no traceback, and replaces the cells after it by one note."""
    build = tmp_path / "build"
    assert run_gated(gated_book, build, FLAT + 0.01) == 0
    nb = nbformat.read(build / "source" / "book" / "01_gated.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [out for cell in code for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("scores found" in out.get("text", "") for out in outputs)
    reason = [out.data["text/markdown"] for out in outputs if out.output_type == "display_data"]
    assert len(reason) == 1 and "Not tested on this model: 0 induction heads count" in reason[0]
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    assert markdown[-1].startswith("## Not tested on this model") and "## Needs the heads" not in markdown
    assert not any("papermill-error-cell-tag" in cell.metadata.get("tags", []) for cell in nb.cells)
    verdict = json.loads((build / "source" / "results" / "01_gated" / "verdict.json").read_text())
    assert verdict[0]["verdict"] == "not tested"


def test_a_chapter_whose_heads_count_runs_in_full(gated_book, tmp_path):
    """The same chapter with a clear IH runs every cell and keeps the verdict of its last cell."""
    build = tmp_path / "build"
    assert run_gated(gated_book, build, 0.9) == 0
    verdict = json.loads((build / "source" / "results" / "01_gated" / "verdict.json").read_text())
    assert verdict["verdict"] == "supported"


def test_the_book_s_claim_chapters_finish_not_tested_on_a_random_model(tmp_path):
    """Chapters 1 to 4 of the real book, run on a randomly initialised GPT-2, stop at their gate: exit status 0,
    every claim "not tested", and each page ends with the note instead of the experiments."""
    model_dir = tmp_path / "random_gpt2"
    random_gpt2(n_layer=3, n_head=4, n_embd=32, vocab=97, n_pos=128).save_pretrained(model_dir)
    build = tmp_path / "build"
    argv = ["--root", str(REPO), "--build-dir", str(build), "--model", str(model_dir), "--no-site", "--no-embedded"]
    assert main([*argv, "--only", "1", "2", "3", "4"]) == 0
    for chapter in CLAIM_CHAPTERS:
        verdicts = load_verdicts(build / "source" / "results" / chapter / "verdict.json")
        assert verdicts and {v.verdict for v in verdicts} == {"not tested"}, chapter
        page = nbformat.read(build / "source" / "book" / f"{chapter}.ipynb", as_version=4)
        assert page.cells[-1].source.startswith("## Not tested on this model"), chapter
