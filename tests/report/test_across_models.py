"""The across-models page: head counts by the one rule, verdicts per model (failed wins), the seed's printed scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ihlib.claims.verdicts import KeyNumber, Verdict
from ihlib.core.stats import Interval
from ihlib.heads.scoring import HeadScores
from ihlib.model.errors import IHLibError
from ihlib.report.across_models import (
    SEED_COLUMN,
    across_record,
    collect_models,
    differing_claims,
    heads_table,
    judged_on,
    layer_counts,
    route_shares_table,
    top_heads_table,
    verdict_lines,
    verdicts_table,
)
from ihlib.report.saving import save_result

CHAPTERS = ["01_diagonal", "03_shuffling"]


def two_layer_scores() -> HeadScores:
    """Layer 0: heads 0-1 shifting, 2-3 neither; layer 1: heads 0-2 induction, head 3 both."""
    induction = np.array([[0.0, 0.0, 0.0, 0.0], [0.9, 0.8, 0.7, 0.9]])
    shifting = np.array([[0.9, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 0.9]])
    return HeadScores(induction, shifting)


def write_model(folder: Path, label: str, verdicts: dict[str, list[dict]], failed: tuple[str, ...] = ()) -> Path:
    """A results folder as the runner leaves it: model.json, chapter 0's scores, verdicts, FAILED.json markers."""
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"label": label, "model_name": label, "site": False}))
    save_result(two_layer_scores(), folder / "00_finding_heads")
    for chapter, records in verdicts.items():
        (folder / chapter).mkdir()
        (folder / chapter / "verdict.json").write_text(json.dumps(records))
    for chapter in failed:
        (folder / chapter).mkdir(exist_ok=True)
        (folder / chapter / "FAILED.json").write_text(json.dumps({"error": "ValueError: boom"}))
    return folder


def claim(name: str, verdict: str, text: str, key: tuple[float, float, float] | None = None) -> dict:
    """A saved verdict record; `key` (mean, low, high) becomes its structured key number."""
    number = KeyNumber("error change", "shuffle minus original", Interval(*key)) if key else None
    return Verdict(name, verdict, text, model="m", scope="top-1 copying", key=number).record()


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """The site's model in source/results, and one other model whose chapter 3 failed after an old verdict."""
    write_model(
        tmp_path / "source" / "results",
        "ihlib-copy",
        {
            "01_diagonal": [claim("Claim 1", "supported", "prose +9.99 [+9.99, +9.99]", (0.55, 0.43, 0.68))],
            "03_shuffling": [claim("Claim 3 (QK)", "partly supported", "text", (0.02, -0.01, 0.05))],
        },
    )
    write_model(
        tmp_path / "models" / "small" / "results",
        "small",
        {
            "01_diagonal": [claim("Claim 1", "not supported", "no interval stated")],
            "03_shuffling": [claim("Claim 3 (QK)", "supported", "an old verdict", (0.9, 0.8, 1.0))],
        },
        failed=("03_shuffling",),
    )
    return tmp_path


def test_layer_counts_follow_the_one_counting_rule():
    """Per layer: induction only, shifting only, both, neither, as `counting_heads` decides."""
    counts = layer_counts(two_layer_scores())
    assert counts == [
        {"induction": 0, "shifting": 2, "both": 0, "neither": 2},
        {"induction": 3, "shifting": 0, "both": 1, "neither": 0},
    ]


def test_models_are_read_site_first_with_labels_and_scores(build):
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    assert [m.label for m in models] == ["ihlib-copy", "small"]
    assert all(m.scores_status == "found" for m in models)
    np.testing.assert_array_equal(models[1].scores.induction, two_layer_scores().induction)


def test_a_failed_chapter_reads_failed_never_its_old_verdict(build):
    """The other model's chapter 3 left FAILED.json beside an old verdict: its cells say "failed"."""
    table = verdicts_table(collect_models(build / "source" / "results", build / "models", CHAPTERS)).data
    rows = {row["claim"]: row for row in table.to_dict("records")}
    measured = " (error change; shuffle minus original)"
    assert rows["Claim 1 [top-1 copying]"]["ihlib-copy"] == "supported: +0.55 [+0.43, +0.68]" + measured
    assert rows["Claim 1 [top-1 copying]"]["small"] == "not supported"
    assert rows["Claim 3 (QK) [top-1 copying]"]["ihlib-copy"] == "partly supported: +0.02 [-0.01, +0.05]" + measured
    assert rows["Claim 3 (QK) [top-1 copying]"]["small"] == "failed"
    assert len(table) == 2


def test_a_chapter_failed_on_every_model_gets_its_own_row(tmp_path):
    write_model(tmp_path / "results", "only", {}, failed=("01_diagonal",))
    table = verdicts_table(collect_models(tmp_path / "results", tmp_path / "none", CHAPTERS)).data
    assert table.to_dict("records") == [
        {"chapter": "01_diagonal", "claim": "(the chapter failed: no claim read)", "only": "failed"}
    ]


def test_failed_or_missing_head_scores_are_named_in_the_heads_tables(build):
    shutil_target = build / "models" / "small" / "results" / "00_finding_heads"
    (shutil_target / "FAILED.json").write_text("{}")
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    assert models[1].scores is None and models[1].scores_status == "failed"
    heads = heads_table(models).data
    assert set(heads["small"]) == {"failed"}
    assert heads.loc[heads[""] == "layer 1", "ihlib-copy"].item() == "3 IH, 1 both"
    assert top_heads_table(models, top=2).data["small: induction"].tolist() == ["failed", "failed"]


def test_the_seed_column_holds_the_printed_gpt2_heads(build):
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    table = top_heads_table(models, top=3).data
    assert table[f"{SEED_COLUMN}: induction"].tolist() == ["L5H1 1.00", "L5H5 0.99", "L6H9 0.99"]
    assert table[f"{SEED_COLUMN}: shifting"].tolist() == ["L4H11 1.00", "L5H6 0.77", "L6H8 0.74"]
    assert table["ihlib-copy: induction"].tolist() == ["L1H0 0.90", "L1H3 0.90", "L1H1 0.80"]
    with pytest.raises(IHLibError, match="top=11"):
        top_heads_table(models, top=11)


def test_the_page_shows_the_key_number_the_verdict_carries_not_a_number_from_its_prose(build):
    """The cell and the saved record hold the structured key number (0.55 [0.43, 0.68]), never the prose's 9.99."""
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    verdict = models[0].verdicts.verdicts["01_diagonal"][0]
    cell = verdicts_table(models).data.set_index("claim").loc["Claim 1 [top-1 copying]", "ihlib-copy"]
    assert verdict.key.formatted() == "+0.55 [+0.43, +0.68]" and verdict.key.formatted() in cell
    assert "9.99" not in cell
    saved = json.loads(json.dumps(across_record(models)))["models"][0]["key_numbers"][0]
    assert saved["key"]["value"] == {"mean": 0.55, "low": 0.43, "high": 0.68}
    assert saved["model"] == "m" and saved["scope"] == "top-1 copying"


def test_claims_that_differ_between_models_are_listed_side_by_side(build):
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    table = differing_claims(models).to_dict("records")
    row = {"chapter": "01_diagonal", "claim": "Claim 1 [top-1 copying]"}
    assert table == [row | {"ihlib-copy": "supported", "small": "not supported"}]


def test_tables_show_no_pandas_index_and_the_record_is_json(build):
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    for table in (heads_table(models), top_heads_table(models), verdicts_table(models), route_shares_table(models)):
        assert "row_heading" not in table.to_html()
    record = json.loads(json.dumps(across_record(models)))
    assert [m["label"] for m in record["models"]] == ["ihlib-copy", "small"]
    assert record["models"][1]["verdicts"]["03_shuffling / (the chapter failed: no claim read)"] == "failed"
    assert record["models"][0]["route_shares"]["copying carried directly"] == "missing"


def test_a_missing_results_folder_is_named(tmp_path):
    with pytest.raises(IHLibError, match="does not exist: run the book first"):
        collect_models(tmp_path / "nothing", tmp_path / "models", CHAPTERS)


def test_the_pages_name_the_models_say_gpt2_was_not_run_and_state_the_curriculum_caveat_once(tmp_path):
    """The default embedded model's training record holds a curriculum; the copy model's does not."""
    write_model(tmp_path / "results", "ihlib-language", {})
    (tmp_path / "results" / "model.json").write_text(json.dumps({"label": "ihlib-language", "model_name": None}))
    write_model(tmp_path / "models" / "ihlib-copy" / "results", "ihlib-copy", {})
    text = judged_on(collect_models(tmp_path / "results", tmp_path / "models", CHAPTERS)).text
    assert "**ihlib-language** (the book's model" in text and "**ihlib-copy**" in text
    assert "GPT-2 was not run here" in text and "python -m ihlib.book --model gpt2" in text
    assert text.count("training curriculum") == 1 and "Caveat on ihlib-language" in text


def test_the_readme_summary_lines_carry_the_structured_key_numbers(build):
    models = collect_models(build / "source" / "results", build / "models", CHAPTERS)
    lines = verdict_lines(models[0])
    assert lines[0] == ("- Claim 1: **supported** on m; error change (shuffle minus original): +0.55 [+0.43, +0.68]")
    assert verdict_lines(models[1])[-1] == "- 03_shuffling: **failed** (no verdict)"


def test_a_key_number_that_rounds_to_zero_prints_without_a_minus_sign():
    key = KeyNumber("error change", "shuffle minus original", Interval(-0.0004, -0.0021, 0.0013))
    assert key.formatted() == "+0.00 [+0.00, +0.00]"
    assert KeyNumber("m", "c", Interval(0.5, float("nan"), float("nan"))).formatted() == "+0.50 (no interval)"


def test_the_route_shares_are_read_from_chapter_1_per_model_with_intervals(build):
    parts = {"shifting heads' direct write": [0.14, 0.1, 0.2], "shifting-head part of the MLPs": [0.8, 0.7, 0.9]}
    record = {"copying_shares": parts | {"rest": [0.06, -0.01, 0.1]}, "forwards": 12}
    (build / "source" / "results" / "01_diagonal" / "route_analysis.json").write_text(json.dumps(record))
    (build / "models" / "small" / "results" / "01_diagonal" / "FAILED.json").write_text(json.dumps({"error": "x"}))
    frame = route_shares_table(collect_models(build / "source" / "results", build / "models", CHAPTERS)).data
    first, second = frame.to_dict("records")
    assert first["model"] == "ihlib-copy" and first["copying carried directly"] == "+0.14 [+0.10, +0.20]"
    assert first["copying carried through the MLPs"] == "+0.80 [+0.70, +0.90]" and first["forwards"] == "12"
    assert first["carried by neither"] == "+0.06 [-0.01, +0.10]"
    assert second["model"] == "small" and set(second.values()) == {"small", "failed"}
