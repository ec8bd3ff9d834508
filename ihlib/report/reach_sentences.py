"""Where the shifting heads look back, in words: chapter 0's statement per model, and whether a copying test reads
positions beyond that reach (chapters 3 and 4). Written from `heads.reach.LookBack`, never typed in."""

from __future__ import annotations

from ihlib.core.copying import CopyingSettings
from ihlib.heads.reach import LOOKS_BACK, LookBack
from ihlib.model.head_ids import head_label
from ihlib.report.sentences import Paragraph


def look_back_paragraph(result: LookBack, model: str) -> Paragraph:
    """Chapter 0: how far each shifting head of `model` looks back, measured on sequences that fill the context."""
    if not result.heads:
        return Paragraph(f"On {model} no head counts as a shifting head, so there is no reach to measure.")
    length = result.previous.shape[1]
    return Paragraph(
        f"**Where the shifting heads look back on {model}** (mean attention to the previous token at least "
        f"{LOOKS_BACK} on {result.batch_size} sequences of {length} tokens, a {result.seg_len}-token segment "
        f"repeated {result.rep} times, the model's whole context): " + "; ".join(result.summary()) + ". "
        f"Every shifting head looks back up to query position {result.common_reach}; the farthest, "
        f"{head_label(*result.farthest[0])}, up to {result.farthest[1]}."
    )


def copying_reach_paragraph(result: LookBack, settings: CopyingSettings, model: str) -> Paragraph:
    """Chapters 3 and 4: whether the copying test's query positions and earlier occurrences lie within the reach."""
    if not result.heads:
        return Paragraph(f"On {model} no head counts as a shifting head: no reach to compare the copying test with.")
    head, reach = result.farthest
    positions = settings.positions()
    length = settings.rep * settings.seg_len + int(settings.bos_token_id is not None)
    read = int(positions.max()) - settings.seg_len + 1  # the token after the latest earlier occurrence
    beyond = int((positions > reach).sum())
    queries = (
        f"all {positions.size} of its query positions lie within it"
        if beyond == 0
        else f"{beyond} of its {positions.size} query positions (up to {int(positions.max())}) lie beyond it"
    )
    source = "within" if read <= reach else "beyond"
    return Paragraph(
        f"**Reach of the shifting heads on {model}:** the farthest, {head_label(*head)}, looks back up to query "
        f"position {reach}, every one of them up to {result.common_reach} (chapter 0). The "
        f"copying test here uses {length}-token sequences ({settings.rep} copies of {settings.seg_len} tokens): "
        f"{queries}; the tokens after earlier occurrences, where an induction head reads what a shifting head wrote, "
        f"sit at positions up to {read}, {source} the reach."
    )
