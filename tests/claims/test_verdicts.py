"""Verdicts: a three-step scale, saved per chapter and gathered in chapter order for the closing page."""

from __future__ import annotations

import json

import pytest

from ihlib.claims.verdicts import Verdict, collect_verdicts
from ihlib.model.errors import IHLibError


def test_unknown_verdict_labels_are_rejected_with_the_scale():
    with pytest.raises(IHLibError, match="supported, partly supported, not supported, not informative, not tested"):
        Verdict("Claim 1", "maybe", "")


def test_collect_reads_single_and_list_records_in_chapter_order_and_names_missing_ones(tmp_path):
    one = Verdict("Claim 1", "not supported", "z below baseline", ["median -0.4"])
    three = [Verdict("Claim 3 (QK)", "supported", "a"), Verdict("Claim 3 (OV)", "partly supported", "b")]
    (tmp_path / "01_diagonal").mkdir()
    (tmp_path / "01_diagonal" / "verdict.json").write_text(json.dumps(one.record()))
    (tmp_path / "03_shuffling").mkdir()
    (tmp_path / "03_shuffling" / "verdict.json").write_text(json.dumps([v.record() for v in three]))
    report = collect_verdicts(tmp_path, ["01_diagonal", "02_common_subspace", "03_shuffling"])
    table = report.table()
    assert table["verdict"].tolist() == ["not supported", "supported", "partly supported"]
    assert table["chapter"].tolist() == ["01_diagonal", "03_shuffling", "03_shuffling"]
    assert report.missing == ["02_common_subspace"]
    markdown = report._repr_markdown_()
    assert "**Claim 1: not supported on this model.** z below baseline" in markdown
    assert "No verdict found for:** 02_common_subspace" in markdown


def test_a_failed_chapter_reads_failed_even_with_a_stale_verdict_next_to_its_marker(tmp_path):
    for chapter in ("01_diagonal", "03_shuffling"):
        (tmp_path / chapter).mkdir()
        (tmp_path / chapter / "verdict.json").write_text(json.dumps(Verdict("Claim", "supported", "old").record()))
    (tmp_path / "01_diagonal" / "FAILED.json").write_text(
        json.dumps({"error": "ValueError: no heads", "cell": "In [4]"})
    )
    report = collect_verdicts(tmp_path, ["01_diagonal", "03_shuffling"])
    assert report.failed == {"01_diagonal": "ValueError: no heads"}
    assert report.table()["verdict"].tolist() == ["failed", "supported"]
    assert report.table()["chapter"].tolist() == ["01_diagonal", "03_shuffling"]
    markdown = report._repr_markdown_()
    assert "### 01_diagonal: failed" in markdown and "ValueError: no heads" in markdown
    assert "old" not in markdown.split("### 03_shuffling")[0]


def test_caveats_are_saved_read_back_and_shown_one_line_per_verdict(tmp_path):
    folder = tmp_path / "03_shuffling"
    folder.mkdir()
    verdict = Verdict("Claim 3 (QK)", "not informative", "text", ["d"], caveat="could not fail here.")
    (folder / "verdict.json").write_text(json.dumps([verdict.record()]))
    report = collect_verdicts(tmp_path, ["03_shuffling"])
    assert report.table().loc[0, ["verdict", "caveat"]].tolist() == ["not informative", "could not fail here."]
    assert verdict._repr_markdown_().endswith("*Caveat: could not fail here.*")
