"""The heads a chapter uses, in one line (chapter 0 shows how they were chosen, in full)."""

from __future__ import annotations

from ihlib.model.head_ids import head_labels


def heads_line(induction: list, shifting: list) -> str:
    """Markdown: "**Heads used:** induction L2H2, L2H3; shifting L0H0 (none: "none")", `[layer, head]` pairs."""
    induction_text = ", ".join(head_labels(induction)) or "none"
    shifting_text = ", ".join(head_labels(shifting)) or "none"
    return f"**Heads used:** induction {induction_text}; shifting {shifting_text}."


class HeadsLine:
    """Displays `heads_line` as Markdown in a notebook."""

    def __init__(self, induction: list, shifting: list):
        self.text = heads_line(induction, shifting)

    def _repr_markdown_(self) -> str:
        """The line's Markdown."""
        return self.text
