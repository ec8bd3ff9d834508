"""Every claim chapter's judgement on one model, called as chapters 1-4 call them: the verdict per claim.

The known-answer tests run it on the planted variants (`ihlib.model.planted_truth` holds the truth) and the
page "A circuit built by hand" shows the table; the options are the chapters' parameters, smaller by default
only where that changes the cost (samples, resamples, repetitions, batch), never the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ihlib.claims.diagonal import diagonal_controls, judge_diagonal
from ihlib.claims.projection import judge_projection, project
from ihlib.claims.shuffling import judge_shuffle_controls, shuffle_controls
from ihlib.claims.subspaces import judge_subspace_controls, subspace_controls
from ihlib.core.copying import CopyingSettings
from ihlib.core.factored import head_subspaces
from ihlib.heads.scoring import head_scores
from ihlib.heads.selection import counting_heads, top_heads
from ihlib.model.loading import AnyGPT2, transformer_of
from ihlib.model.weights import head_weights


@dataclass(frozen=True)
class ChapterOptions:
    """The chapters' parameters that the judgements depend on (defaults: the chapters', cheaper where marked)."""

    seed: int = 0
    batch_size: int = 50
    seg_len: int = 25
    rep: int = 3
    fraction: float = 0.5
    margin: float = 0.1
    num_samp: int = 200  # chapters: 500
    n_boot: int = 500  # chapters: 2000
    max_tokens: int = 4096
    ranks: tuple[int, ...] = (2, 3, 5, 10)
    copy_seg_len: int = 20
    copy_batch_size: int = 8  # chapters: 32
    n_exp_shuffle: int = 4  # chapter 3: 10
    n_exp_projection: int = 3  # chapter 4: 5
    max_rank: int = 64
    step: int = 8
    cross_fit: bool = True
    tolerance: float = 0.1


FAST = ChapterOptions(num_samp=100, n_boot=200, max_tokens=512, n_exp_shuffle=3, step=16)
"""The options of the known-answer tests and the page "A circuit built by hand": the chapters' rules, fewer samples,
resamples, tokens, shuffle repetitions and swept ranks (16, 32, 48, 64), so that five tiny variants take about a
minute on 2 cores."""


@dataclass(frozen=True)
class KnownAnswers:
    """Verdict label per claim ("diagonal", "subspace", "shuffle QK", ...), the heads that count, and key numbers."""

    labels: dict[str, str]
    induction: list[list[int]]
    shifting: list[list[int]]
    numbers: dict[str, str] = field(default_factory=dict)


def judge_claims(model: AnyGPT2, options: ChapterOptions = ChapterOptions()) -> KnownAnswers:
    """Run chapters 1-4's computations and judgements on `model` with `options`; return every claim's label."""
    o = options
    scores = head_scores(model, batch_size=o.batch_size, seg_len=o.seg_len, rep=o.rep, seed=o.seed)
    rule = dict(fraction=o.fraction, margin=o.margin)
    IH_real, SH_real = counting_heads(scores, "induction", **rule), counting_heads(scores, "shifting", **rule)
    if not IH_real or not SH_real:
        labels = dict.fromkeys(("diagonal", "subspace", "shuffle QK", "shuffle OV", "projection QK", "projection OV"))
        return KnownAnswers({claim: "not tested" for claim in labels}, IH_real, SH_real)
    IH_list, Shifting_list = top_heads(scores, "induction", None, **rule), top_heads(scores, "shifting", None, **rule)
    exclude = IH_real + SH_real
    W_all = head_weights(model).cpu()
    labels, numbers = {}, {}
    W_E = transformer_of(model).wte.weight.detach().cpu()
    controls = diagonal_controls(
        W_all, IH_list, Shifting_list, exclude=exclude, W_E=W_E, max_tokens=o.max_tokens, n_boot=o.n_boot, seed=o.seed
    )
    labels["diagonal"] = judge_diagonal(controls).label
    subspaces = head_subspaces(W_all)
    common = dict(ranks=list(o.ranks), exclude=exclude, n_boot=o.n_boot, seed=o.seed)
    matched = [
        subspace_controls(subspaces, IH_list=IH_list, Shifting_list=Shifting_list, **common),
        subspace_controls(subspaces, IH_list=IH_list, **common),
        subspace_controls(subspaces, Shifting_list=Shifting_list, **common),
    ]
    subspace_judgement = judge_subspace_controls(matched)
    labels["subspace"] = subspace_judgement.label
    numbers["subspace"] = ", ".join(f"{mode}: {label}" for mode, label in subspace_judgement.labels.items())
    labels |= _shuffle_labels(model, scores, IH_real, SH_real, o, numbers)
    labels |= _projection_labels(model, W_all, IH_list, Shifting_list, o, numbers)
    return KnownAnswers(labels, IH_real, SH_real, numbers)


def _shuffle_labels(model: AnyGPT2, scores, IH_real: list, SH_real: list, o: ChapterOptions, numbers: dict) -> dict:
    """Chapter 3's controlled shuffles of QK (induction) and OV (shifting) and their judgements."""
    settings = CopyingSettings(
        seg_len=o.copy_seg_len, rep=o.rep, batch_size=o.copy_batch_size, n_exp=o.n_exp_shuffle, seed=o.seed
    )
    labels = {}
    listed = IH_real + SH_real  # neither kind belongs to the pools of heads "of another kind"
    for component, ranked, real in (("QK", scores.IH_list, IH_real), ("OV", scores.Shifting_list, SH_real)):
        controls = shuffle_controls(
            model, ranked[: max(2, len(real))], component=component, exclude=listed, settings=settings, progress=False
        )
        judgement = judge_shuffle_controls(controls, tolerance=o.tolerance)
        labels[f"shuffle {component}"] = judgement.label
        numbers[f"shuffle {component}"] = f"{judgement.why} " + ", ".join(
            f"{name}: {change.mean:+.2f}" for name, change in (judgement.changes or {}).items()
        )
    return labels


def _projection_labels(model: AnyGPT2, W_all, IH_list: list, Shifting_list: list, o: ChapterOptions, numbers) -> dict:
    """Chapter 4's projection sweeps (out and keep only, QK and OV) and their judgements."""
    settings = CopyingSettings(
        seg_len=o.copy_seg_len, rep=o.rep, batch_size=o.copy_batch_size, n_exp=o.n_exp_projection, seed=o.seed
    )
    sweep = dict(max_rank=o.max_rank, step=o.step, cross_fit=o.cross_fit, settings=settings, progress=False)
    runs = [
        project(model, W_all, IH_list, edited, component=component, project_out=out, **sweep)
        for component, edited in (("QK", IH_list), ("OV", Shifting_list))
        for out in (True, False)
    ]
    judgements = judge_projection(runs, tolerance=o.tolerance)
    for component, judgement in judgements.items():
        numbers[f"projection {component}"] = (
            f"decisive ranks (out, keep): {judgement.decisive[True]}, {judgement.decisive[False]}; "
            f"killed at {judgement.killed}; {judgement.why}"
        )
    return {f"projection {component}": judgement.label for component, judgement in judgements.items()}
