"""The runner keeps a user's files, its own build folder consistent, and stops cleanly on a signal or a second runner.

The chapters are tiny throwaway notebooks executed for real by papermill (a few seconds each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from conftest import write_book
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ihlib.book.cli import main, run_book
from ihlib.book.guard import BUILD_MARKER, build_lock
from ihlib.model.errors import BookError

pytestmark = pytest.mark.slow  # executes notebooks

REPO = Path(__file__).resolve().parents[2]


def notebook(name: str, parameters: str, code: str) -> nbformat.NotebookNode:
    """A page titled `name` with a `parameters` cell and one code cell."""
    return new_notebook(
        cells=[
            new_markdown_cell(f"# {name}"),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            new_code_cell(textwrap.dedent(code)),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


CLAIM = """\
    import json, time
    from pathlib import Path

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, "partial.json").write_text(json.dumps(sleep))
    time.sleep(sleep)
    Path(output_dir, "verdict.json").write_text(json.dumps({"claim": "c", "verdict": verdict, "text": "t"}))
    """

GATHER = """\
    import json
    from pathlib import Path

    verdict = json.loads(Path("results/01_claim/verdict.json").read_text())["verdict"]
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, "seen.json").write_text(json.dumps(verdict))
    """


@pytest.fixture
def claim_book(tmp_path: Path) -> Path:
    """A book with one claim chapter (its verdict and a sleep are parameters) and a gathering page."""
    claim = 'model_name = None\nseed = 0\noutput_dir = "results/01_claim"\nverdict = "supported"\nsleep = 0\n'
    pages = {
        "01_claim": notebook("01_claim", claim, CLAIM),
        "conclusion": notebook("conclusion", 'output_dir = "results/conclusion"\n', GATHER),
    }
    return write_book(tmp_path / "repo", pages)


def test_a_folder_with_someone_elses_files_is_refused_and_kept(claim_book, tmp_path, capsys):
    """A non-empty build folder the runner did not make is refused, naming it; nothing in it is deleted."""
    build = tmp_path / "thesis"
    (build / "source").mkdir(parents=True)
    (build / "source" / "thesis.tex").write_text("years of work")
    status = main(["--root", str(claim_book), "--build-dir", str(build), "--no-site", "--no-embedded"])
    assert status == 2
    err = capsys.readouterr().err
    assert f"--build-dir {build} is not empty and the book runner did not make it" in err
    assert (build / "source" / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in build.rglob("*")) == ["source", "thesis.tex"]


def test_a_new_folder_gets_a_marker_and_an_earlier_runners_folder_is_adopted(claim_book, tmp_path):
    """The runner marks the folder it makes; a folder with an earlier runner's run.json (no marker) is adopted and
    its cache kept."""
    build = tmp_path / "build"
    run_book(claim_book, build, site=False, progress=False)
    assert (build / BUILD_MARKER).is_file()
    old = tmp_path / "old"
    (old / "cache").mkdir(parents=True)
    (old / "cache" / "entry.npz").write_bytes(b"kept")
    (old / "run.json").write_text('{"chapters": {}}')
    run_book(claim_book, old, site=False, progress=False)
    assert (old / BUILD_MARKER).is_file()
    assert (old / "cache" / "entry.npz").read_bytes() == b"kept"


def test_a_second_runner_on_one_build_folder_is_stopped_naming_the_first(claim_book, tmp_path):
    """While one runner holds the build folder's lock, another is refused with the first one's pid."""
    build = tmp_path / "build"
    build.mkdir()
    (build / BUILD_MARKER).write_text("{}")
    with build_lock(build):
        with pytest.raises(BookError, match=rf"Another book runner \(pid {os.getpid()}, started .*UTC\) is using"):
            run_book(claim_book, build, site=False, progress=False)
    run_book(claim_book, build, site=False, progress=False)  # released


def test_only_a_chapter_rebuilds_the_pages_that_gather_verdicts(claim_book, tmp_path):
    """`--only 01` with a parameter that changes the verdict also reruns the conclusion: it never shows the old one."""
    build = tmp_path / "build"
    run_book(claim_book, build, site=False, progress=False)
    seen = build / "source" / "results" / "conclusion" / "seen.json"
    assert json.loads(seen.read_text()) == "supported"
    run = run_book(claim_book, build, {"verdict": "refuted"}, only=["01"], site=False, progress=False)
    assert list(run.chapter_seconds) == ["01_claim", "conclusion"]
    assert json.loads(seen.read_text()) == "refuted"


def test_sigterm_stops_the_chapter_at_once_and_marks_it_interrupted(claim_book, tmp_path):
    """SIGTERM during a chapter kills its kernel within seconds; the chapter's results hold only a marker saying
    "interrupted", run.json says so, no stray notebook stays, and the runner exits 143 with one line."""
    build = tmp_path / "build"
    run_book(claim_book, build, site=False, progress=False)
    command = [sys.executable, "-m", "ihlib.book", "--root", str(claim_book), "--build-dir", str(build)]
    command += ["--no-site", "--no-embedded", "--param", "sleep=120", "--only", "01"]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    results = build / "source" / "results" / "01_claim"
    deadline = time.monotonic() + 120
    while not _reads(results / "partial.json", "120") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _reads(results / "partial.json", "120"), runner.communicate()
    runner.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = runner.communicate(timeout=60)
    assert time.monotonic() - sent < 20
    assert runner.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM")
    assert sorted(p.name for p in results.iterdir()) == ["FAILED.json"]
    marker = json.loads((results / "FAILED.json").read_text())
    assert marker["status"] == "interrupted" and marker["error"] == "interrupted by SIGTERM"
    assert json.loads((build / "run.json").read_text())["chapters"]["01_claim"]["status"] == "interrupted"
    assert not (build / "running").exists()
    assert (build / "source" / "book" / "01_claim.ipynb").is_file()  # the last complete page stays


def _reads(path: Path, text: str) -> bool:
    """Whether `path` exists and holds `text`."""
    try:
        return path.read_text() == text
    except OSError:
        return False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sleep: !!binary aGVsbG8=\n", "the tag tag:yaml.org,2002:binary is not plain data"),
        ("sleep: [!!timestamp 2024-01-31]\n", "the tag tag:yaml.org,2002:timestamp is not plain data"),
        ("seed: 2024-01-31\n", "parameter seed='2024-01-31'"),
        ("seed: -1\n", "parameter seed=-1 is out of range"),
    ],
)
def test_a_params_file_is_data_checked_before_anything_is_written(claim_book, tmp_path, capsys, text, message):
    """Tagged bytes or dates, or a value out of its range, stop the run with status 2 and one line naming the
    parameter before the build folder is touched."""
    params = tmp_path / "p.yml"
    params.write_text(text)
    build = tmp_path / "build"
    status = main(["--root", str(claim_book), "--build-dir", str(build), "--params", str(params), "--no-site"])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not build.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", ""], "model_name='' names no model"),
        (["--param", "model_name=5"], "parameter model_name=5: model_name is a string (or None), not 5."),
    ],
)
def test_a_model_name_that_is_empty_or_not_text_is_one_clear_error(claim_book, tmp_path, capsys, args, message):
    """An empty `--model` or a number as model_name is refused before anything is written (was a TypeError)."""
    build = tmp_path / "build"
    assert main(["--root", str(claim_book), "--build-dir", str(build), "--no-site", *args]) == 2
    assert message in capsys.readouterr().err
    assert not build.exists()
