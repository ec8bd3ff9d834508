"""The verdict box: a MyST admonition holding model, key number with interval, sentence, scope and caveat."""

from ihlib.claims.verdicts import KeyNumber, Verdict
from ihlib.core.stats import Interval
from ihlib.report.verdict_box import VerdictBox, verdict_box


def _verdict(**overrides) -> Verdict:
    fields = dict(
        claim="Shuffling QK",
        verdict="not supported",
        text="Swapping keys among IHs breaks copying as much as random heads.",
        caveat="one seed of shuffles",
        model="ihlib-language",
        scope="top-1 copying on repeated random tokens",
        key=KeyNumber("copying error", "IH shuffle minus random shuffle", Interval(0.125, 0.031, 0.2049)),
    )
    return Verdict(**{**fields, **overrides})


def test_box_is_an_unfolded_admonition_with_every_part():
    box = verdict_box(_verdict())
    lines = box.splitlines()
    assert lines[0] == "```{admonition} Shuffling QK: not supported"
    assert lines[1] == ":class: warning" and lines[-1] == "```"
    assert "dropdown" not in box
    for part in ("ihlib-language", "top-1 copying on repeated random tokens", "+0.12 [+0.03, +0.20]", "*Caveat:"):
        assert part in box


def test_box_without_key_says_nothing_was_judged_and_reads_no_none():
    box = verdict_box(_verdict(key=None, verdict="not informative", caveat="", model="", scope=""))
    assert "none (nothing was judged)" in box and "None" not in box and "Caveat" not in box
    assert ":class: important" in box


def test_verdictbox_displays_several_verdicts_as_consecutive_boxes():
    markdown = VerdictBox([_verdict(), _verdict(claim="Shuffling OV")])._repr_markdown_()
    assert markdown.count("```{admonition}") == 2 and markdown.splitlines().count("```") == 2


def test_heads_line_names_both_kinds_in_one_line_and_says_none():
    from ihlib.report.heads_line import HeadsLine, heads_line

    assert heads_line([[2, 2], [1, 0]], []) == "**Heads used:** induction L2H2, L1H0; shifting none."
    assert "\n" not in HeadsLine([[2, 2]], [[0, 0]])._repr_markdown_()


def test_html_box_has_the_admonition_classes_every_part_and_escapes_text():
    from ihlib.report.verdict_box import verdict_box_html

    box = verdict_box_html(_verdict(text="error < 0.1 & harmless"))
    assert box.startswith('<div class="admonition warning">') and box.endswith("</div>")
    for part in ("ihlib-language", "+0.12 [+0.03, +0.20]", "error &lt; 0.1 &amp; harmless", "Caveat: one seed"):
        assert part in box
    assert VerdictBox([_verdict(), _verdict()])._repr_html_().count('class="admonition-title"') == 2


def test_box_shows_the_one_sentence_summary_and_folds_the_full_text_and_details():
    from ihlib.report.verdict_box import verdict_box_html

    verdict = _verdict(text="Long evidence; " * 20, details=["against random heads: +0.97"], summary="One sentence.")
    box = verdict_box_html(verdict)
    visible, folded = box.split("<details>")
    assert "One sentence." in visible and "Long evidence" not in visible
    assert "Long evidence" in folded and "<li>against random heads: +0.97</li>" in folded
    assert "One sentence." in verdict_box(verdict) and "Long evidence" not in verdict_box(verdict)
    assert Verdict.from_record(verdict.record()).summary == "One sentence."
