"""A chapter's verdict as a MyST admonition (Markdown): the box a page shows unfolded under its main figure."""

from __future__ import annotations

import html

from ihlib.claims.verdicts import Verdict

_BOX_CLASS = {
    "supported": "tip",
    "partly supported": "note",
    "not supported": "warning",
    "not informative": "important",
    "not tested": "important",
}


def verdict_box(verdict: Verdict, *, title: str = "") -> str:
    """MyST admonition Markdown (a backtick-fenced directive, which myst-nb renders in cell outputs too) of one
    verdict: title "<claim>: <verdict>", then the model, the key number with its 95% interval, the verdict's one
    sentence and the scope; the caveat in italics. Never folded."""
    key = (
        f"**Key number:** {verdict.key.measures} ({verdict.key.comparison}): {verdict.key.formatted()}."
        if verdict.key
        else "**Key number:** none (nothing was judged)."
    )
    lines = [
        f"```{{admonition}} {title or verdict.claim}: {verdict.verdict}",
        f":class: {_BOX_CLASS[verdict.verdict]}",
        "",
        f"**Model:** {verdict.model or 'this model'}. **Scope:** {verdict.scope or 'as stated in the text'}.",
        "",
        key,
        "",
        verdict.sentence,
    ]
    if verdict.caveat:
        lines += ["", f"*Caveat: {verdict.caveat}*"]
    return "\n".join([*lines, "```"])


def verdict_box_html(verdict: Verdict, *, title: str = "") -> str:
    """The same box as HTML with the theme's admonition classes (what a page shows: myst-nb renders Markdown
    outputs as CommonMark, without directives); under the sentence, the evidence in full, folded."""
    key = (
        f"{verdict.key.measures} ({verdict.key.comparison}): {verdict.key.formatted()}."
        if verdict.key
        else "none (nothing was judged)."
    )
    parts = [
        f'<div class="admonition {_BOX_CLASS[verdict.verdict]}">',
        f'<p class="admonition-title">{html.escape(title or verdict.claim)}: {html.escape(verdict.verdict)}</p>',
        f"<p><strong>Model:</strong> {html.escape(verdict.model or 'this model')}. <strong>Scope:</strong> "
        f"{html.escape(verdict.scope or 'as stated in the text')}.</p>",
        f"<p><strong>Key number:</strong> {html.escape(key)}</p>",
        f"<p>{html.escape(verdict.sentence)}</p>",
    ]
    if verdict.caveat:
        parts.append(f"<p><em>Caveat: {html.escape(verdict.caveat)}</em></p>")
    return "\n".join([*parts, evidence_html(verdict), "</div>"])


def evidence_html(verdict: Verdict) -> str:
    """The verdict's full text and detail lines in a closed <details> ("" when the sentence is all there is)."""
    if not verdict.summary and not verdict.details:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in verdict.details)
    lines = f"<ul>{items}</ul>" if items else ""
    return f"<details><summary>The evidence in full</summary><p>{html.escape(verdict.text)}</p>{lines}</details>"


def verdict_boxes(verdicts: list[Verdict]) -> str:
    """Several verdicts of one chapter (e.g. one per component) as consecutive boxes."""
    return "\n\n".join(verdict_box(v) for v in verdicts)


class VerdictBox:
    """Displays as the Markdown of `verdict_boxes` in a notebook: `VerdictBox(verdicts)` as a cell's last line."""

    def __init__(self, verdicts: Verdict | list[Verdict]):
        self.verdicts = [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)

    def _repr_markdown_(self) -> str:
        """The boxes' Markdown."""
        return verdict_boxes(self.verdicts)

    def _repr_html_(self) -> str:
        """The boxes' HTML (what the built page shows)."""
        return "\n".join(verdict_box_html(v) for v in self.verdicts)
