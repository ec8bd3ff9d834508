"""The book runner: parameter parsing and filtering, toc order, failures, and that `book/` stays untouched.

The execution tests run tiny throwaway notebooks with papermill for real (a few seconds each); the site build
is checked on the real book by tests/test_site.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import nbformat
import papermill
import pytest
import torch
from conftest import random_gpt2, write_book
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ihlib.book.cli import main, other_models_of, parse_args, run_book
from ihlib.book.execution import ChapterJob, longest_first
from ihlib.book.pages import merged_streams, terminal_text
from ihlib.book.params import check_parameters, parameters_for, parse_param, shared_parameters, typed_parameter
from ihlib.book.places import embedded_models, model_places
from ihlib.book.toc import chapter_notebooks, select_chapters, toc_files
from ihlib.claims.verdicts import collect_verdicts
from ihlib.model.errors import BookError, IHLibError, ParameterError

pytestmark = pytest.mark.slow  # executes notebooks or draws figures

REPO = Path(__file__).resolve().parents[2]
SHARED_NAMES = {"model_name", "device", "seed", "output_dir"}
GATHERING_PAGES = ("conclusion", "across_models")  # run after the chapters, on what they saved


def tiny_chapter(name: str, extra: str = "") -> nbformat.NotebookNode:
    """A chapter that records the parameters it received in `output_dir/params.json`; `extra` adds names."""
    parameters = f'model_name = None\nseed = 0\noutput_dir = "results/{name}"\n{extra}'
    record = textwrap.dedent(
        """\
        import json
        from pathlib import Path

        received = {k: v for k, v in globals().items() if k in PARAMETER_NAMES}
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "params.json").write_text(json.dumps(received))
        Path(output_dir, "verdict.json").write_text(json.dumps({"claim": "c", "verdict": "supported", "text": "t"}))
        if globals().get("fail"):
            raise ValueError("boom in " + output_dir)
        print("\\rstep 1 of 2\\rstep 2 of 2")
        """
    )
    names = ["model_name", "seed", "output_dir"] + [line.split("=")[0].strip() for line in extra.splitlines()]
    return new_notebook(
        cells=[
            new_markdown_cell(f"# {name}"),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            new_code_cell(f"PARAMETER_NAMES = {names!r}\n" + record),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


@pytest.fixture
def tiny_book(tmp_path: Path) -> Path:
    """A repository root with a toc, an intro page and three tiny chapters (the second can be made to fail)."""
    chapters = {"00_first": "n = 1", "01_second": "fail = False", "02_third": "n = 1"}
    return write_book(tmp_path / "repo", {name: tiny_chapter(name, extra) for name, extra in chapters.items()})


def tree_digest(folder: Path) -> str:
    """Hash of every file's relative path and bytes under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n_exp=20", ("n_exp", 20)),
        ("ratio=0.5", ("ratio", 0.5)),
        ("model_name=null", ("model_name", None)),
        ("model_name=gpt2", ("model_name", "gpt2")),
        ("ranks=[2, 3, 5]", ("ranks", [2, 3, 5])),
        ("progress=false", ("progress", False)),
        ("path=a=b", ("path", "a=b")),
    ],
)
def test_param_values_are_read_as_yaml(text, expected):
    """`--param name=value` types the value as YAML does."""
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["no_equals_sign", "=3", "1st=3", "two words=1"])
def test_malformed_param_is_rejected(text):
    """A `--param` without a Python identifier before `=` is an input error."""
    with pytest.raises(IHLibError, match="name=value"):
        parse_param(text)


def test_file_then_params_then_model_later_wins(tmp_path):
    """The parameter file is overridden by `--param`, which is overridden by `--model`."""
    params_file = tmp_path / "p.yml"
    params_file.write_text("model_name: from_file\nn_exp: 2\nseed: 4\n")
    shared = shared_parameters(params_file, ["n_exp=5", "model_name=from_param"], model="gpt2")
    assert shared == {"model_name": "gpt2", "n_exp": 5, "seed": 4}
    assert shared_parameters(None, [], None) == {}


def test_params_file_must_be_a_mapping(tmp_path):
    """A parameter file holding a list, or a missing file, is an input error."""
    params_file = tmp_path / "p.yml"
    params_file.write_text("- 1\n- 2\n")
    with pytest.raises(IHLibError, match="mapping"):
        shared_parameters(params_file)
    with pytest.raises(IHLibError, match="does not exist"):
        shared_parameters(tmp_path / "missing.yml")


def test_each_notebook_gets_only_the_names_it_declares():
    """Filtering keeps the shared names a notebook declares and drops the others."""
    shared = {"model_name": "gpt2", "n_exp": 20, "ranks": [2, 3]}
    assert parameters_for(shared, {"model_name", "seed", "ranks"}) == {"model_name": "gpt2", "ranks": [2, 3]}
    assert parameters_for(shared, set()) == {}


def test_a_name_no_chapter_declares_is_an_error_naming_it():
    """A typo in a parameter name fails before anything runs, naming the typo and the declared names."""
    declared = {"00_a": {"model_name", "seed"}, "03_b": {"model_name", "n_exp"}}
    check_parameters({"model_name": "gpt2", "n_exp": 3}, declared)
    with pytest.raises(IHLibError, match=r"n_epx.*Declared parameters: model_name, n_exp, seed"):
        check_parameters({"n_epx": 3}, declared)
    with pytest.raises(IHLibError, match="output_dir is set per chapter"):
        check_parameters({"output_dir": "x"}, {"00_a": {"output_dir"}})


def test_toc_is_read_in_order_with_parts_and_sections(tmp_path):
    """Entries come in reading order: root, then parts, chapters and sections depth first."""
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: One\n    chapters:\n      - file: book/00_a\n        sections:\n          - file: book/00_b\n"
        "  - caption: Two\n    chapters:\n      - file: book/01_c\n      - file: book/end\n"
    )
    assert toc_files(tmp_path) == ["book/intro", "book/00_a", "book/00_b", "book/01_c", "book/end"]


def test_missing_toc_page_and_missing_toc_are_named(tmp_path):
    """A toc entry without a file, or no toc at all, is an input error that names what is missing."""
    with pytest.raises(IHLibError, match="No _toc.yml"):
        toc_files(tmp_path)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/00_gone\n")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    with pytest.raises(IHLibError, match="book/00_gone"):
        chapter_notebooks(tmp_path)


def test_chapters_are_selected_by_name_or_number(tiny_book):
    """`--only` accepts `01_second` or `1`, keeps toc order, and rejects an unknown chapter."""
    notebooks = chapter_notebooks(tiny_book)
    assert [nb.stem for nb in notebooks] == ["00_first", "01_second", "02_third"]
    assert [nb.stem for nb in select_chapters(notebooks, ["02", "00_first"])] == ["00_first", "02_third"]
    assert [nb.stem for nb in select_chapters(notebooks, ["1"])] == ["01_second"]
    assert select_chapters(notebooks, None) == notebooks
    with pytest.raises(IHLibError, match="no such chapter"):
        select_chapters(notebooks, ["07_missing"])


def test_a_chapter_name_without_number_matches_only_itself():
    """`--only no_such_chapter` is an error listing the chapters, although `conclusion` has no number either."""
    notebooks = [Path("book/00_first.ipynb"), Path("book/conclusion.ipynb")]
    assert select_chapters(notebooks, ["conclusion"]) == [Path("book/conclusion.ipynb")]
    with pytest.raises(BookError, match=r"--only no_such_chapter: no such chapter\. Chapters: 00_first, conclusion"):
        select_chapters(notebooks, ["no_such_chapter"])


def test_repeated_only_accumulates():
    """`--only 00 --only 2 3` selects all three, as `--param` does."""
    assert parse_args(["--only", "00", "--only", "2", "3"]).only == ["00", "2", "3"]


def test_malformed_params_file_is_one_line_naming_file_and_position(tmp_path, tiny_book, capsys):
    """A YAML syntax error in `--params` exits with status 2 and one line: the file, line and column, the problem."""
    params_file = tmp_path / "bad.yml"
    params_file.write_text("n: 3\nseed: [1, 2\nmodel_name: x\n")
    status = main(["--root", str(tiny_book), "--build-dir", str(tmp_path / "build"), "--params", str(params_file)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"error: Parameter file {params_file} is not valid YAML at line 3, column 11:")


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("1e3", 10, 1000),
        (1000.0, 10, 1000),
        (7, 10, 7),
        ("1e3", 0.1, 1000.0),
        (3, 0.1, 3.0),
        ("abc", None, "abc"),
        ([2, 3], [2, 3, 5], [2, 3]),
        (True, False, True),
        ("cpu", "auto", "cpu"),
    ],
)
def test_a_parameter_takes_the_type_of_its_default(value, default, expected):
    """Numbers written as `1e3` become numbers; an integral number becomes an int where the default is an int."""
    typed = typed_parameter("n_exp", value, default, chapter="03_shuffling")
    assert typed == expected and type(typed) is type(expected)


@pytest.mark.parametrize(
    ("value", "default", "message"),
    [
        ("abc", 10, r"parameter n_exp='abc': the default in 03_shuffling is 10 \(int\), so use an integer such as 20"),
        (2.5, 10, r"n_exp=2\.5: the default in 03_shuffling is 10 \(int\), so use an integer"),
        (True, 10, r"n_exp=True: the default in 03_shuffling is 10 \(int\)"),
        ("abc", 0.1, r"n_exp='abc': the default in 03_shuffling is 0\.1 \(float\), so use a number"),
        ("yes", False, r"n_exp='yes': the default in 03_shuffling is False \(bool\), so use true or false"),
        (5, [2, 3], r"n_exp=5: the default in 03_shuffling is \[2, 3\] \(list\), so use a list"),
        (5, "auto", r"n_exp=5: the default in 03_shuffling is 'auto' \(str\), so use a string"),
    ],
)
def test_a_parameter_of_the_wrong_type_names_it_and_its_default(value, default, message):
    with pytest.raises(ParameterError, match=message):
        typed_parameter("n_exp", value, default, chapter="03_shuffling")


def test_a_badly_typed_parameter_stops_before_anything_runs(tiny_book, tmp_path, capsys):
    """`--param n=abc` where `n = 1` exits with status 2 naming the parameter and its type; nothing executes."""
    build = tmp_path / "build"
    status = main(["--root", str(tiny_book), "--build-dir", str(build), "--param", "n=abc", "--no-site"])
    assert status == 2
    assert "parameter n='abc': the default in 00_first is 1 (int)" in capsys.readouterr().err
    assert not (build / "source").exists()


def test_a_number_in_exponent_notation_reaches_the_chapter_as_an_int(tiny_book, tmp_path):
    build = tmp_path / "build"
    run_book(tiny_book, build, {"n": "1e3"}, only=["0"], site=False, progress=False)
    assert json.loads((build / "source" / "results" / "00_first" / "params.json").read_text())["n"] == 1000


def test_progress_bars_keep_their_last_state():
    """Carriage returns overwrite a line as on a terminal, and consecutive streams of one name merge."""
    assert terminal_text("\rbar 0%\rbar 50%\rbar 100%\ndone\n") == "bar 100%\ndone\n"
    assert terminal_text("plain\ntext") == "plain\ntext"
    outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\rload 0%"),
        nbformat.v4.new_output("stream", name="stderr", text="\rload 100%"),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),
        nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
    ]
    merged = merged_streams(outputs)
    assert [(o.name, o.text) for o in merged] == [("stderr", "load 100%\n"), ("stdout", "hello\n")]


def test_tqdm_bars_on_stderr_are_dropped_and_other_text_kept():
    """A tqdm bar on stderr leaves the page (an output left empty goes too); stdout and other stderr lines stay."""
    bar = "\rshuffle QK:   0%|          | 0/30 [00:00<?, ?it/s]\rshuffle QK: 100%|##########| 30/30 [00:06<00:00]\n"
    outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=bar),
        nbformat.v4.new_output("stream", name="stdout", text="40%|of heads| 2/5 [kept: stdout]\n"),
        nbformat.v4.new_output("stream", name="stderr", text=bar + "a message\n"),
    ]
    merged = merged_streams(outputs)
    assert [(o.name, o.text) for o in merged] == [
        ("stdout", "40%|of heads| 2/5 [kept: stdout]\n"),
        ("stderr", "a message\n"),
    ]


def test_run_executes_every_chapter_with_its_own_parameters(tiny_book, tmp_path):
    """Chapters run in toc order in the build folder, each with only its declared names; `book/` is untouched."""
    before = tree_digest(tiny_book / "book")
    build = tmp_path / "build"
    run = run_book(tiny_book, build, {"model_name": "m", "n": 7}, site=False, progress=False)
    assert run.failed is None
    assert list(run.chapter_seconds) == ["00_first", "01_second", "02_third"]
    results = build / "source" / "results"
    assert json.loads((results / "00_first" / "params.json").read_text()) == {
        "model_name": "m",
        "seed": 0,
        "output_dir": "results/00_first",
        "n": 7,
    }
    second = json.loads((results / "01_second" / "params.json").read_text())
    assert second == {"model_name": "m", "seed": 0, "output_dir": "results/01_second", "fail": False}
    executed = nbformat.read(build / "source" / "book" / "02_third.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0].text == "step 2 of 2\n"
    assert (build / "source" / "book" / "intro.md").is_file()
    assert json.loads((build / "timings.json").read_text())["failed"] is None
    assert tree_digest(tiny_book / "book") == before
    assert not (tiny_book / "results").exists()


def test_only_runs_the_chosen_chapters(tiny_book, tmp_path):
    """`only` executes the chosen chapter alone; the others are neither executed nor given results."""
    build = tmp_path / "build"
    run = run_book(tiny_book, build, only=["02"], site=False, progress=False)
    assert list(run.chapter_seconds) == ["02_third"]
    assert sorted(p.name for p in (build / "source" / "results").iterdir() if p.is_dir()) == ["02_third"]


def test_failing_chapter_stops_the_run_and_keeps_earlier_results(tiny_book, tmp_path, capsys):
    """A chapter's error stops the run with exit status 1 and names chapter and error; earlier results stay; with one
    job at a time, no later chapter starts."""
    before = tree_digest(tiny_book / "book")
    build = tmp_path / "build"
    status = main(
        ["--root", str(tiny_book), "--build-dir", str(build), "--param", "fail=true", "--no-site", "--jobs", "1"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "Chapter 01_second failed in cell In [3]: ValueError: boom in results/01_second" in captured.err
    assert "00_first" in captured.out and "FAILED" in captured.out
    results = build / "source" / "results"
    assert (results / "00_first" / "params.json").is_file()
    assert (results / "01_second" / "params.json").is_file()
    assert not (results / "02_third").exists()
    assert not (build / "source" / "book" / "01_second.ipynb").exists()
    failed = nbformat.read(build / "failed" / "01_second.ipynb", as_version=4)
    assert failed.metadata.papermill.exception is True
    assert f"Executed notebook with the error: {build / 'failed' / '01_second.ipynb'}" in captured.err
    assert json.loads((build / "timings.json").read_text())["failed"]["chapter"] == "01_second"
    assert tree_digest(tiny_book / "book") == before


def test_a_failed_rerun_keeps_the_good_notebook_and_leaves_no_verdict_or_site(tiny_book, tmp_path, capsys):
    """After a good run, a failing rerun of one chapter keeps its last good executed notebook, removes its
    verdict (the conclusion reads "failed" from a marker instead), and removes the previous site."""
    build = tmp_path / "build"
    run_book(tiny_book, build, site=False, progress=False)
    good = (build / "source" / "book" / "01_second.ipynb").read_bytes()
    (build / "html").mkdir()
    (build / "html" / "index.html").write_text("<html>old site</html>")
    status = main(
        ["--root", str(tiny_book), "--build-dir", str(build), "--only", "1", "--param", "fail=true", "--no-embedded"]
    )
    assert status == 1
    assert "removed the previous site" in capsys.readouterr().err
    assert (build / "source" / "book" / "01_second.ipynb").read_bytes() == good
    results = build / "source" / "results"
    assert not (results / "01_second" / "verdict.json").exists()
    marker = json.loads((results / "01_second" / "FAILED.json").read_text())
    assert marker["error"] == "ValueError: boom in results/01_second"
    assert not (build / "html").exists()
    report = collect_verdicts(results, ["00_first", "01_second"])
    assert report.table()["verdict"].tolist() == ["supported", "failed"]
    assert "01_second: failed" in report._repr_markdown_()
    run_book(tiny_book, build, only=["1"], site=False, progress=False)
    assert not (results / "01_second" / "FAILED.json").exists()
    assert collect_verdicts(results, ["01_second"]).table()["verdict"].tolist() == ["supported"]


def test_each_executed_page_and_the_build_say_which_run_built_them(tiny_book, tmp_path):
    """The runner puts a provenance cell (model, parameters, date) first in each executed notebook, and run.json."""
    build = tmp_path / "build"
    run_book(tiny_book, build, {"model_name": "my_gpt2", "n": 7}, site=False, progress=False)
    executed = nbformat.read(build / "source" / "book" / "00_first.ipynb", as_version=4)
    provenance = executed.cells[1]
    assert provenance.cell_type == "markdown" and "provenance" in provenance.metadata.tags
    assert "model `my_gpt2`" in provenance.source and "`n=7`" in provenance.source
    record = json.loads((build / "run.json").read_text())
    date = record["chapters"]["00_first"]["date"]
    assert date[:4].isdigit() and date in provenance.source
    assert record["chapters"]["00_first"]["parameters"] == {"model_name": "my_gpt2", "n": 7}
    assert record["chapters"]["01_second"]["status"] == "done"
    run_book(tiny_book, build, only=["2"], site=False, progress=False)
    again = json.loads((build / "run.json").read_text())["chapters"]
    assert again["00_first"] == record["chapters"]["00_first"]
    assert (
        again["02_third"]["parameters"] == {}
        and again["02_third"]["model"] == "ihlib-language (the embedded default model)"
    )


def test_a_relative_model_directory_reaches_the_chapters_as_an_absolute_path(tiny_book, tmp_path, monkeypatch):
    """Chapters run inside the build folder, so `--model DIR` relative to where the runner starts is made absolute."""
    random_gpt2().save_pretrained(tmp_path / "my_gpt2")
    monkeypatch.chdir(tmp_path)
    build = tmp_path / "build"
    status = main(
        ["--root", str(tiny_book), "--build-dir", str(build), "--model", "my_gpt2", "--only", "0", "--no-site"]
        + ["--no-embedded"]
    )
    assert status == 0
    received = json.loads((build / "source" / "results" / "00_first" / "params.json").read_text())
    assert received["model_name"] == str(tmp_path / "my_gpt2")


def test_a_model_directory_of_another_architecture_stops_before_anything_runs(tiny_book, tmp_path, capsys):
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    build = tmp_path / "build"
    status = main(["--root", str(tiny_book), "--build-dir", str(build), "--model", str(llama), "--no-site"])
    assert status == 2
    assert "architecture 'llama' (LlamaForCausalLM); ihlib supports only GPT-2" in capsys.readouterr().err
    assert not (build / "source").exists()


def test_unknown_parameter_stops_before_anything_runs(tiny_book, tmp_path, capsys):
    """A typo in `--param` exits with status 2 and a message naming it, before any chapter executes."""
    build = tmp_path / "build"
    status = main(["--root", str(tiny_book), "--build-dir", str(build), "--param", "n_exp=3", "--no-site"])
    assert status == 2
    assert "n_exp" in capsys.readouterr().err
    assert not (build / "source").exists()


@pytest.mark.parametrize("build_dir", [".", "..", "book", "book/x"])
def test_build_dir_must_not_overwrite_the_repository_or_book(tiny_book, build_dir):
    """A build folder that is the repository, a parent of it, or inside `book/` is refused before anything runs."""
    with pytest.raises(IHLibError, match="--build-dir"):
        run_book(tiny_book, tiny_book / build_dir, site=False, progress=False)


@pytest.mark.parametrize("notebook", chapter_notebooks(REPO), ids=lambda nb: nb.stem)
def test_repository_chapters_follow_the_conventions(notebook):
    """Each chapter is stored without outputs and declares the shared names, with its own output_dir."""
    nb = nbformat.read(REPO / notebook, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "stored with outputs"
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(REPO / notebook))
    assert declared["output_dir"]["default"] == f'"results/{notebook.stem}"'
    if notebook.stem in GATHERING_PAGES:  # read the chapters' saved results: no model of their own
        assert declared["results_dir"]["default"] == '"results"'
        return
    assert SHARED_NAMES <= set(declared)
    assert declared["model_name"]["default"] == "None"
    assert declared["device"]["default"] == '"auto"'


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only torch")
def test_cuda_on_a_cpu_only_torch_stops_before_anything_runs(tiny_book, tmp_path, capsys):
    build = tmp_path / "build"
    (tiny_book / "book" / "00_first.ipynb").write_text(
        nbformat.writes(tiny_chapter("00_first", 'n = 1\ndevice = "auto"'))
    )
    status = main(["--root", str(tiny_book), "--build-dir", str(build), "--param", "device=cuda", "--no-site"])
    assert status == 2
    assert "device='cuda' but this torch has no CUDA" in capsys.readouterr().err
    assert not (build / "source").exists()


def chapter_with_code(name: str, code: str, parameters: str = "model_name = None\n") -> nbformat.NotebookNode:
    """A tiny notebook: a title, a `parameters` cell (`parameters` plus `output_dir`), then `code`."""
    return new_notebook(
        cells=[
            new_markdown_cell(f"# {name}"),
            new_code_cell(f'{parameters}output_dir = "results/{name}"', metadata={"tags": ["parameters"]}),
            new_code_cell(textwrap.dedent(code)),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


def test_chapters_run_at_once_with_two_jobs(tiny_book, tmp_path):
    """With two jobs, a chapter that waits for a file the next chapter writes finishes: both ran at the same time."""
    wait_for_sibling = """\
        import time
        from pathlib import Path

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "started").write_text("yes")
        sibling = Path("results", SIBLING, "started")
        for _ in range(600):  # a guard against a hang: 60 s, far beyond the few seconds a kernel needs to start
            if sibling.is_file():
                break
            time.sleep(0.1)
        assert sibling.is_file(), "the other chapter never started while this one ran"
        """
    for name, sibling in (("00_first", "01_second"), ("01_second", "00_first")):
        notebook = chapter_with_code(name, f"SIBLING = {sibling!r}\n" + textwrap.dedent(wait_for_sibling))
        nbformat.write(notebook, tiny_book / "book" / f"{name}.ipynb")
    run = run_book(tiny_book, tmp_path / "build", only=["0", "1"], site=False, progress=False, jobs=2)
    assert run.failed is None and list(run.chapter_seconds) == ["00_first", "01_second"]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_whole_number(tiny_book, tmp_path, jobs):
    with pytest.raises(BookError, match=rf"--jobs {jobs!r}: give a whole number"):
        run_book(tiny_book, tmp_path / "build", site=False, progress=False, jobs=jobs)


@pytest.fixture
def book_with_gathering_page(tiny_book: Path) -> Path:
    """The tiny book with a last page that declares no model and lists every results file it can see."""
    lister = """\
        import json
        from pathlib import Path

        seen = sorted(str(p) for p in [*Path("results").rglob("params.json"), *Path("../models").rglob("params.json")])
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "seen.json").write_text(json.dumps(seen))
        """
    nbformat.write(chapter_with_code("gather", lister, parameters=""), tiny_book / "book" / "gather.ipynb")
    nbformat.write(chapter_with_code("about", "print(model_name)"), tiny_book / "book" / "about.ipynb")
    toc = tiny_book / "_toc.yml"
    toc.write_text(toc.read_text() + "  - file: book/about\n  - file: book/gather\n")
    return tiny_book


def test_claims_run_on_every_other_model_into_its_own_folder(book_with_gathering_page, tmp_path):
    """Other models run every numbered chapter, in `models/<label>/`, with their own model; the site's model is not run
    twice; an unnumbered page with `model_name` runs on the site's model only; a page without `model_name` runs once,
    after all of them, and sees them all."""
    random_gpt2().save_pretrained(tmp_path / "small_gpt2")
    build = tmp_path / "build"
    others = ["ihlib-language", str(tmp_path / "small_gpt2")]
    run = run_book(book_with_gathering_page, build, {"n": 3}, site=False, progress=False, other_models=others)
    assert run.failed is None and run.model_failures == []
    chapters = ["00_first", "01_second", "02_third"]
    assert list(run.chapter_seconds) == [*chapters, "about", "gather", *[f"small_gpt2/{c}" for c in chapters]]
    assert sorted(p.name for p in (build / "models").iterdir()) == ["small_gpt2"]
    results = build / "models" / "small_gpt2" / "results"
    received = json.loads((results / "00_first" / "params.json").read_text())
    assert received == {"model_name": str(tmp_path / "small_gpt2"), "seed": 0, "output_dir": "results/00_first", "n": 3}
    assert (build / "models" / "small_gpt2" / "book" / "02_third.ipynb").is_file()
    assert json.loads((results / "model.json").read_text())["label"] == "small_gpt2"
    assert json.loads((build / "source" / "results" / "model.json").read_text())["label"] == "ihlib-language"
    seen = json.loads((build / "source" / "results" / "gather" / "seen.json").read_text())
    assert len(seen) == 6 and sum("small_gpt2" in path for path in seen) == 3
    assert not (build / "models" / "small_gpt2" / "results" / "gather").exists()


def test_a_failure_on_another_model_is_marked_and_the_run_goes_on(tiny_book, tmp_path, capsys):
    """A chapter that fails on another model leaves FAILED.json in that model's results and no verdict; the site's
    chapters and the gathering pages still run, and the exit status is 1."""
    fails_on_broken = """\
        from pathlib import Path

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "verdict.json").write_text('{"claim": "c", "verdict": "supported", "text": "t"}')
        if model_name and model_name.endswith("broken"):
            raise RuntimeError("this model is broken")
        """
    nbformat.write(chapter_with_code("01_second", fails_on_broken), tiny_book / "book" / "01_second.ipynb")
    random_gpt2().save_pretrained(tmp_path / "broken")
    build = tmp_path / "build"
    args = ["--root", str(tiny_book), "--build-dir", str(build), "--no-site", "--no-embedded"]
    status = main([*args, "--models", str(tmp_path / "broken")])
    assert status == 1
    assert "Chapter broken/01_second failed" in capsys.readouterr().err
    broken = build / "models" / "broken" / "results" / "01_second"
    assert json.loads((broken / "FAILED.json").read_text())["error"] == "RuntimeError: this model is broken"
    assert not (broken / "verdict.json").exists()
    assert (build / "source" / "book" / "01_second.ipynb").is_file()
    assert (build / "models" / "broken" / "results" / "02_third" / "params.json").is_file()
    assert collect_verdicts(broken.parent, ["01_second"]).table()["verdict"].tolist() == ["failed"]


def test_models_get_short_distinct_labels_and_the_site_model_runs_once(tmp_path):
    """Labels: the embedded name, a local folder's name, a hub name with `--`; a repeated label gets `-2`; a model
    equal to the site's (or listed twice) is dropped."""
    random_gpt2().save_pretrained(tmp_path / "a" / "gpt2")
    others = ["ihlib-language", "ihlib-default", "openai-community/gpt2", "gpt2", str(tmp_path / "a" / "gpt2"), "gpt2"]
    places = model_places(tmp_path / "build", None, others)
    assert [(p.label, p.site) for p in places] == [
        ("ihlib-language", True),
        ("openai-community--gpt2", False),
        ("gpt2", False),
        ("gpt2-2", False),
    ]
    assert places[3].workdir == tmp_path / "build" / "models" / "gpt2-2"


def test_models_option_adds_to_the_embedded_ones_unless_told_not_to():
    """`--models a,b` (repeatable) adds models after the embedded ones; `--no-embedded` leaves only those given."""
    assert other_models_of(parse_args(["--models", "x, y", "--models", "z"])) == [*embedded_models(), "x", "y", "z"]
    assert other_models_of(parse_args(["--no-embedded", "--models", "x"])) == ["x"]
    with pytest.raises(BookError, match="--models ' , ' names no model"):
        other_models_of(parse_args(["--models", " , "]))


def test_a_missing_local_model_in_models_stops_before_anything_runs(tiny_book, tmp_path, capsys):
    """A `--models` directory that is no GPT-2 is refused, naming it, before any chapter runs."""
    (tmp_path / "empty").mkdir()
    build = tmp_path / "build"
    status = main(["--root", str(tiny_book), "--build-dir", str(build), "--models", str(tmp_path / "empty")])
    assert status == 2
    assert "has no config.json" in capsys.readouterr().err
    assert not (build / "source").exists()


def test_kernels_show_no_progress_bars_or_warnings_and_share_the_score_cache(tiny_book, tmp_path):
    """Inside a chapter tqdm draws nothing, a warning prints nothing, and IHLIB_SCORE_CACHE names the build's cache."""
    noisy = """\
        import os
        import warnings

        from tqdm.auto import tqdm

        for _ in tqdm(range(3), desc="loop"):
            pass
        for _ in tqdm(range(3), desc="forced on", disable=False):  # overrides TQDM_DISABLE: the runner drops it
            pass
        warnings.warn("a warning the page must not show")
        print("cache:", os.environ["IHLIB_SCORE_CACHE"])
        """
    nbformat.write(chapter_with_code("00_first", noisy), tiny_book / "book" / "00_first.ipynb")
    build = tmp_path / "build"
    run_book(tiny_book, build, only=["0"], site=False, progress=False)
    executed = nbformat.read(build / "source" / "book" / "00_first.ipynb", as_version=4)
    texts = [output.get("text", "") for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert texts == [f"cache: {build / 'cache'}\n"]


def test_each_page_links_its_saved_data_and_its_executed_notebook(tiny_book, tmp_path):
    """The provenance cell offers every JSON and NPZ the chapter saved and the executed notebook, by paths that exist
    relative to the page."""
    saves = """\
        from pathlib import Path

        import numpy as np

        Path(output_dir, "sub").mkdir(parents=True, exist_ok=True)
        np.savez(Path(output_dir, "sub", "arrays.npz"), x=np.arange(3))
        Path(output_dir, "record.json").write_text("{}")
        Path(output_dir, "figure.png").write_bytes(b"")
        """
    nbformat.write(chapter_with_code("00_first", saves), tiny_book / "book" / "00_first.ipynb")
    build = tmp_path / "build"
    run_book(tiny_book, build, only=["0"], site=False, progress=False)
    page = build / "source" / "book" / "00_first.ipynb"
    provenance = nbformat.read(page, as_version=4).cells[1].source
    targets = re.findall(r"\{download\}`([^<`]+) <([^>]+)>`", provenance)
    assert [name for name, _ in targets] == ["record.json", "sub/arrays.npz", "00_first.ipynb"]
    assert all((page.parent / target).is_file() for _, target in targets)


def test_download_links_resolve_in_the_built_site(tiny_book, tmp_path):
    """In the built tiny site, each chapter's download links point at files the site serves."""
    build = tmp_path / "build"
    run = run_book(tiny_book, build, only=["0"], progress=False)
    html = (build / "html" / "book" / "00_first.html").read_text()
    links = re.findall(r'<a class="reference download internal" download="" href="([^"]+)"', html)
    assert {Path(link).name for link in links} == {"params.json", "verdict.json", "00_first.ipynb"}
    assert all((run.index_html.parent / "book" / link).resolve().is_file() for link in links)


def test_jobs_the_last_run_timed_start_longest_first(tmp_path):
    """Timed jobs go first, longest first; untimed ones follow in their given order."""
    (site,) = model_places(tmp_path, None, [])
    names = ("00_a", "01_b", "02_c", "03_d")
    jobs = [ChapterJob(site, Path(f"book/{name}.ipynb"), tmp_path / name, {}, {}) for name in names]
    ordered = longest_first(jobs, {"01_b": 5.0, "03_d": 50.0})
    assert [job.name for job in ordered] == ["03_d", "01_b", "00_a", "02_c"]
