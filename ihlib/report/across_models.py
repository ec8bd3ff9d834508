"""The claims across models: per model, the heads found and every claim's verdict side by side, read from what each
model's chapters saved (the book runner puts the site's model in `results/` and every other model in
`../models/<label>/results/`), beside the GPT-2 head scores that the seed notebook printed (not recomputed here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from ihlib.claims.verdicts import FAILED_MARKER, Verdict, VerdictReport, collect_verdicts
from ihlib.core.stats import Interval
from ihlib.heads.head_table import head_table
from ihlib.heads.scoring import HeadScores, ScoreSetting
from ihlib.heads.selection import count_threshold
from ihlib.model.errors import IHLibError
from ihlib.model.head_ids import HEAD_KINDS, head_label
from ihlib.report.formatting import format_interval
from ihlib.report.model_facts import curriculum_note, training_record
from ihlib.report.seed_gpt2 import SEED_GPT2_TOP
from ihlib.report.sentences import Paragraph

MODEL_RECORD = "model.json"  # written by the book runner in each model's results folder
SCORES_CHAPTER = "00_finding_heads"
SCORES_FILE = "head_scores.json"
ROUTES_CHAPTER = "01_diagonal"
ROUTES_FILE = "route_analysis.json"
ROUTE_COLUMNS = {  # column: the part in `route_analysis.json`
    "copying carried directly": "shifting heads' direct write",
    "copying carried through the MLPs": "shifting-head part of the MLPs",
    "carried by neither": "rest",
}

SEED_COLUMN = "GPT-2 (printed by the seed, not recomputed)"
FAILED_ROW = "(the chapter failed: no claim read)"  # the row of a chapter that no model has a verdict for


@dataclass
class ModelResults:
    """One model's saved results: its label, `model_name`, results folder, head scores (None when chapter 0 has no
    scores: `scores_status` says "failed" or "missing") and the claims' verdicts."""

    label: str
    model_name: str | None
    folder: Path
    scores: HeadScores | None
    scores_status: str
    verdicts: VerdictReport


def load_head_scores(path: str | Path) -> HeadScores:
    """Read a `head_scores.json` written by `save_result(HeadScores)`: both score arrays and their setting."""
    record = json.loads(Path(path).read_text())
    return HeadScores(
        np.array(record["induction"], dtype=float),
        np.array(record["shifting"], dtype=float),
        ScoreSetting(**record["setting"]),
    )


def model_results(folder: str | Path, chapters: list[str]) -> ModelResults:
    """Read one model's results folder: `model.json` (label; the folder's parent's name when absent), chapter 0's
    head scores ("failed" when it left `FAILED.json`) and the verdicts of `chapters`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IHLibError(f"results folder {str(folder)!r} does not exist: run the book first, or pass results_dir.")
    record_path = folder / MODEL_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    scores_dir = folder / SCORES_CHAPTER
    if (scores_dir / FAILED_MARKER).is_file():
        scores, status = None, "failed"
    elif (scores_dir / SCORES_FILE).is_file():
        scores, status = load_head_scores(scores_dir / SCORES_FILE), "found"
    else:
        scores, status = None, "missing"
    label = record.get("label") or folder.resolve().parent.name
    return ModelResults(label, record.get("model_name"), folder, scores, status, collect_verdicts(folder, chapters))


def collect_models(results_dir: str | Path, models_dir: str | Path, chapters: list[str]) -> list[ModelResults]:
    """The site's model (`results_dir`) first, then every model under `models_dir/<label>/results`, by label."""
    others = sorted(Path(models_dir).glob("*/results")) if Path(models_dir).is_dir() else []
    return [model_results(results_dir, chapters), *[model_results(folder, chapters) for folder in others]]


GPT2_NOT_RUN = (
    "GPT-2 was not run here: the machines that built this book cannot reach the Hugging Face hub, so no verdict on "
    "these pages is GPT-2's. Where the hub (or a local copy) is reachable, `python -m ihlib.book --model gpt2` runs "
    "every chapter on GPT-2, and `python -m ihlib.book --models gpt2` adds it as a column of the across-models page."
)


def judged_on(models: list[ModelResults]) -> Paragraph:
    """Which models the verdicts were judged on (the book's model first), that GPT-2 was not run, and, once, the
    curriculum caveat of every model whose training record holds one."""
    names = [
        f"**{m.label}**" + (" (the book's model, the pages before this one)" if i == 0 else "")
        for i, m in enumerate(models)
    ]
    notes = []
    for m in models:
        record = training_record(m.model_name)
        note = curriculum_note(record) if record else ""
        if note:
            notes.append(f"*Caveat on {m.label}: {note}.*")
    return Paragraph(
        f"Verdicts judged on: {', '.join(names)}; every verdict names its model. {GPT2_NOT_RUN}"
        + "".join(f"\n\n{note}" for note in notes)
    )


def layer_counts(scores: HeadScores) -> list[dict[str, int]]:
    """Per layer, how many heads count as induction heads, as shifting heads, as both, and as neither (`head_table`)."""
    return head_table(scores).role_counts()


def _count_cell(count: dict[str, int]) -> str:
    """One layer's counts as "2 IH, 1 SH, 5 neither" (a kind with no head left out; "both" only when present)."""
    names = {"induction": "IH", "shifting": "SH", "both": "both", "neither": "neither"}
    return ", ".join(f"{n} {names[kind]}" for kind, n in count.items() if n) or "none"


def heads_table(models: list[ModelResults]) -> Styler:
    """Per layer (rows) and model (columns): the heads that count as induction (IH), shifting (SH), both or
    neither, then each kind's total and the bar a score must reach; "failed"/"missing" without chapter 0's scores."""
    depth = max((m.scores.induction.shape[0] for m in models if m.scores is not None), default=0)
    rows = {f"layer {layer}": {} for layer in range(depth)}
    rows |= {"total": {}, "bar (induction, shifting)": {}}
    for m in models:
        if m.scores is None:
            for row in rows.values():
                row[m.label] = m.scores_status
            continue
        counts = layer_counts(m.scores)
        for layer in range(depth):
            rows[f"layer {layer}"][m.label] = _count_cell(counts[layer]) if layer < len(counts) else ""
        totals = {kind: sum(c[kind] for c in counts) for kind in counts[0]}
        rows["total"][m.label] = _count_cell(totals)
        bars = [f"{count_threshold(m.scores, kind):.2f}" for kind in HEAD_KINDS]
        rows["bar (induction, shifting)"][m.label] = ", ".join(bars)
    return _styled(pd.DataFrame([{"": name, **row} for name, row in rows.items()]))


def top_heads_table(models: list[ModelResults], *, top: int = 5) -> Styler:
    """The `top` heads of each kind per model ("L1H3 0.97", best first), and the seed's printed GPT-2 heads."""
    if not 1 <= top <= len(SEED_GPT2_TOP["induction"]):
        raise IHLibError(f"top={top!r}: choose 1..{len(SEED_GPT2_TOP['induction'])} (the seed's heads listed here).")
    columns: dict[str, list[str]] = {}
    for m in models:
        for kind in HEAD_KINDS:
            columns[f"{m.label}: {kind}"] = _top_cells(m, kind, top)
    for kind in HEAD_KINDS:
        columns[f"{SEED_COLUMN}: {kind}"] = [f"{head_label(*pair)} {score:.2f}" for pair, score in SEED_GPT2_TOP[kind]][
            :top
        ]
    return _styled(pd.DataFrame({"rank": range(1, top + 1), **columns}))


def _top_cells(m: ModelResults, kind: str, top: int) -> list[str]:
    """A model's `top` heads of `kind` as "L1H3 0.97", padded with "" (or its scores' status when it has none)."""
    if m.scores is None:
        return [m.scores_status] * top
    values = getattr(m.scores, kind)
    ranked = m.scores.IH_list if kind == "induction" else m.scores.Shifting_list
    cells = [f"{head_label(layer, head)} {values[layer, head]:.2f}" for layer, head in ranked[:top]]
    return cells + [""] * (top - len(cells))


def verdict_cell(verdict: Verdict) -> str:
    """One verdict as a cell: "label: +0.55 [+0.43, +0.68] (what it measures; the comparison)", read from its
    structured key number (`Verdict.key`), never from its prose; the label alone without a key number."""
    if verdict.key is None:
        return verdict.verdict
    return f"{verdict.verdict}: {verdict.key.formatted()} ({verdict.key.measures}; {verdict.key.comparison})"


def verdict_cells(report: VerdictReport) -> dict[tuple[str, str], str]:
    """One model's cells by (chapter, claim with its scope): `verdict_cell`, "failed" for a failed chapter."""
    cells = {}
    for chapter in report.chapters:
        if chapter in report.failed:
            cells[(chapter, FAILED_ROW)] = "failed"
        for verdict in report.verdicts.get(chapter, []):
            cells[(chapter, _claim_row(verdict))] = verdict_cell(verdict)
    return cells


def _claim_row(verdict: Verdict) -> str:
    """A claim's row name: the claim, and its scope in brackets when it has one."""
    return f"{verdict.claim} [{verdict.scope}]" if verdict.scope else verdict.claim


def verdict_labels(models: list[ModelResults]) -> dict[tuple[str, str], dict[str, str]]:
    """Per (chapter, claim with scope): the label of each model that saved a verdict for it."""
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for m in models:
        for chapter in m.verdicts.chapters:
            for verdict in m.verdicts.verdicts.get(chapter, []):
                labels.setdefault((chapter, _claim_row(verdict)), {})[m.label] = verdict.verdict
    return labels


def differing_claims(models: list[ModelResults]) -> pd.DataFrame:
    """The claims whose verdict differs between the models that judged them: one row per claim, one column per
    model ("missing" where a model saved none; no rows when every model with a verdict agrees)."""
    rows = [
        {"chapter": chapter, "claim": claim, **{m.label: per_model.get(m.label, "missing") for m in models}}
        for (chapter, claim), per_model in verdict_labels(models).items()
        if len(set(per_model.values())) > 1
    ]
    return pd.DataFrame(rows, columns=["chapter", "claim", *[m.label for m in models]])


def verdicts_table(models: list[ModelResults]) -> Styler:
    """Every claim (rows, chapter order) per model (columns): the verdict with its key number and interval;
    "failed" for a chapter whose last run failed (never an older verdict), "missing" where none was saved."""
    per_model = {m.label: verdict_cells(m.verdicts) for m in models}
    keys = list(dict.fromkeys(key for cells in per_model.values() for key in cells))
    judged = {chapter for chapter, claim in keys if claim != FAILED_ROW}
    keys = [key for key in keys if key[1] != FAILED_ROW or key[0] not in judged]
    chapters = {chapter: i for m in models for i, chapter in enumerate(m.verdicts.chapters)}
    keys.sort(key=lambda key: chapters.get(key[0], len(chapters)))
    rows = []
    for chapter, claim in keys:
        row = {"chapter": chapter, "claim": claim}
        for m in models:
            failed = chapter in m.verdicts.failed
            row[m.label] = "failed" if failed else per_model[m.label].get((chapter, claim), "missing")
        rows.append(row)
    return _styled(pd.DataFrame(rows, columns=["chapter", "claim", *per_model]))


def verdict_lines(m: ModelResults) -> list[str]:
    """One Markdown bullet per verdict of one model, from its structured fields (the README's summary is this):
    "claim (scope): **label**; key number: what it measures (comparison) value [low, high]"."""
    lines = []
    for chapter in m.verdicts.chapters:
        if chapter in m.verdicts.failed:
            lines.append(f"- {chapter}: **failed** (no verdict)")
        for v in m.verdicts.verdicts.get(chapter, []):
            key = f"; {v.key.measures} ({v.key.comparison}): {v.key.formatted()}" if v.key else ""
            lines.append(f"- {v.claim}: **{v.verdict}** on {v.model or m.label}{key}")
    return lines


def across_record(models: list[ModelResults]) -> dict:
    """JSON-friendly summary saved beside the page: per model, its head counts per layer and the verdict cells."""
    return {
        "seed_gpt2_top_printed_not_recomputed": {
            kind: [[list(pair), score] for pair, score in heads] for kind, heads in SEED_GPT2_TOP.items()
        },
        "models": [
            {
                "label": m.label,
                "model_name": m.model_name,
                "scores": m.scores_status,
                "layer_counts": layer_counts(m.scores) if m.scores is not None else None,
                "verdicts": {" / ".join(key): cell for key, cell in verdict_cells(m.verdicts).items()},
                "route_shares": route_shares_row(m),
                "key_numbers": [
                    {"chapter": chapter, "model": v.model, "claim": v.claim, "scope": v.scope, "verdict": v.verdict}
                    | ({"key": v.key.record()} if v.key else {})
                    for chapter, found in m.verdicts.verdicts.items()
                    for v in found
                ],
            }
            for m in models
        ],
    }


def route_shares_row(m: ModelResults) -> dict[str, str]:
    """One model's shares of copying per route with 95% intervals, read from chapter 1's `route_analysis.json`
    ("missing" when chapter 1 saved none, "failed" when it failed)."""
    folder = m.folder / ROUTES_CHAPTER
    row = {"model": m.label}
    if (folder / FAILED_MARKER).is_file() or not (folder / ROUTES_FILE).is_file():
        status = "failed" if (folder / FAILED_MARKER).is_file() else "missing"
        return row | dict.fromkeys([*ROUTE_COLUMNS, "forwards"], status)
    record = json.loads((folder / ROUTES_FILE).read_text())
    shares = record["copying_shares"]
    row |= {column: format_interval(Interval(*shares[part]), signed=True) for column, part in ROUTE_COLUMNS.items()}
    return row | {"forwards": str(record["forwards"])}


def route_shares_table(models: list[ModelResults]) -> Styler:
    """One row per model: the share of copying the shifting heads' direct write carries, the share their part of
    the MLPs carries and the rest (Shapley shares, 95% intervals over sequences), and the forwards it took."""
    return _styled(pd.DataFrame([route_shares_row(m) for m in models]))


def _styled(frame: pd.DataFrame) -> Styler:
    """A table shown without the pandas index, cells left-aligned."""
    return frame.style.hide(axis="index").set_properties(**{"text-align": "left"})
