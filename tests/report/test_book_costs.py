"""The measured cost of the whole book at GPT-2-small's shapes: its table and sentence, from the record."""

from __future__ import annotations

import json

from ihlib.report.book_costs import book_costs, cost_sentence, cost_table, total_minutes

RECORD = {
    "model": "planted-gpt2-small",
    "date": "2026-12-04",
    "machine": "2 shared cores",
    "commit": "abc1234",
    "jobs": 2,
    "chapters": {"00_finding_heads": 579.1, "02_common_subspace": 301.6},
    "unfinished": {"03_shuffling": 1200.4},
    "site": None,
    "wall": 1800.0,
}


def test_the_table_lists_finished_chapters_then_unfinished_ones_and_the_wall_clock_in_whole_seconds():
    frame = cost_table(RECORD)
    assert frame["chapter"].tolist() == [
        "00_finding_heads",
        "02_common_subspace",
        "03_shuffling",
        "whole run, wall clock",
    ]
    assert frame["seconds"].tolist() == [579, 302, 1200, 1800]
    assert frame["status"].tolist() == ["done", "done", "not finished", "not finished"]
    assert frame["minutes"].tolist() == [9.6, 5.0, 20.0, 30.0]


def test_the_sentence_gives_the_wall_clock_minutes_and_names_what_did_not_finish(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(RECORD))
    record = book_costs(path)
    text = cost_sentence(record).text
    assert total_minutes(record) == 30.0
    assert text.startswith("The whole run took **30.0 minutes** of wall clock on 2 shared cores, 2 chapters at a time")
    assert text.endswith(
        "03_shuffling did not finish in the time the session had (stopped after 1200 s): their rows are lower bounds."
    )
    finished = {**record, "unfinished": {}, "site": 12.0}
    assert "did not finish" not in cost_sentence(finished).text
    assert cost_table(finished)["chapter"].tolist()[-2:] == ["site (Jupyter Book)", "whole run, wall clock"]
