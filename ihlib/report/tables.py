"""Tables the chapters show (pandas): heads with scores and roles, z-scores, matchings, edits; they only annotate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ihlib.claims.diagonal import SEED_Z_THRESHOLD, QKOVZScores
from ihlib.claims.projection import SUBSPACES, ProjectionResult, decisive_rank, killed_rank, plateau
from ihlib.claims.shuffling import CONDITIONS, ShuffleControls, ShuffleSweep, intact_heads, repetition_intact
from ihlib.claims.subspaces import SubspaceMatching, matching_reading
from ihlib.core.circuits import STATISTICS
from ihlib.core.control_groups import PairGroup
from ihlib.core.copying import per_repetition
from ihlib.core.stats import Effect, Interval, percentile_of, read_error_change
from ihlib.heads.scoring import HeadScores
from ihlib.heads.selection import FRACTION, MARGIN, count_threshold, counting_heads, head_role, ranking
from ihlib.model.head_ids import check_k, head_label
from ihlib.report.formatting import format_interval

LIST_KINDS = {"IH_list": "induction", "Shifting_list": "shifting"}


def ranking_table(scores: HeadScores, top: int = 10) -> pd.DataFrame:
    """The `top` heads of both rankings with their scores and score / uniform-attention baseline."""
    top = check_k(top, scores.induction.size, "top")
    baseline = scores.uniform
    rows = []
    pairs = zip(scores.IH_list[:top], scores.Shifting_list[:top], strict=True)
    for rank, ((li, hi), (ls, hs)) in enumerate(pairs, start=1):
        rows.append(
            {
                "rank": rank,
                "induction head": head_label(li, hi),
                "induction score": scores.induction[li, hi],
                "× baseline (ind.)": scores.induction[li, hi] / baseline["induction"],
                "shifting head": head_label(ls, hs),
                "shifting score": scores.shifting[ls, hs],
                "× baseline (shift.)": scores.shifting[ls, hs] / baseline["shifting"],
            }
        )
    return pd.DataFrame(rows).set_index("rank").round(3)


def listed_heads_table(scores: HeadScores, IH_list: list, Shifting_list: list) -> pd.DataFrame:
    """One row per listed head: both scores and the own-kind score over the uniform-attention baseline."""
    baseline = scores.uniform
    rows = []
    for name, heads in (("IH_list", IH_list), ("Shifting_list", Shifting_list)):
        kind = LIST_KINDS[name]
        for position, (layer, head) in enumerate(heads, start=1):
            rows.append(
                {
                    "list": name,
                    "position": position,
                    "head": head_label(layer, head),
                    "induction score": float(scores.induction[layer, head]),
                    "shifting score": float(scores.shifting[layer, head]),
                    "× uniform baseline (own kind)": float(getattr(scores, kind)[layer, head]) / baseline[kind],
                }
            )
    return pd.DataFrame(rows).set_index(["list", "position"]).round(3)


def selection_table(
    scores: HeadScores, kind: str, K: int, *, fraction: float = FRACTION, margin: float = MARGIN
) -> pd.DataFrame:
    """The top `K` heads of the `kind` ranking: both scores, own-kind score over uniform, whether it counts, role."""
    threshold = count_threshold(scores, kind, fraction=fraction, margin=margin)
    heads = ranking(scores, kind)
    K = check_k(K, len(heads))
    rows = [
        {
            "rank": rank,
            "head": head_label(layer, head),
            "induction score": float(scores.induction[layer, head]),
            "shifting score": float(scores.shifting[layer, head]),
            f"{kind} score / uniform": float(getattr(scores, kind)[layer, head]) / scores.uniform[kind],
            f"counts as {kind} head (>= {threshold:.3g})": bool(getattr(scores, kind)[layer, head] >= threshold),
            "role": head_role(scores, layer, head, fraction=fraction, margin=margin),
        }
        for rank, (layer, head) in enumerate(heads[:K], start=1)
    ]
    return pd.DataFrame(rows).set_index("rank").round(3)


def zscore_table(result: QKOVZScores, top: int | None = None) -> pd.DataFrame:
    """Listed `(IH, SH)` pairs by decreasing z-score (the first `top`, default all) with their baseline percentile."""
    percentiles = result.percentiles
    rows = [
        {
            "IH": head_label(*ih),
            "SH": head_label(*sh),
            "SH in an earlier layer": bool(result.composable[i, j]),
            "z": float(result.zscores[i, j]),
            "percentile among random pairs": float(percentiles[i, j]),
        }
        for i, ih in enumerate(result.IH_list)
        for j, sh in enumerate(result.Shifting_list)
    ]
    table = pd.DataFrame(rows).sort_values("z", ascending=False, kind="stable").reset_index(drop=True)
    table.index += 1
    return table.head(top).round(2) if top is not None else table.round(2)


def zscore_overview(result: QKOVZScores) -> pd.DataFrame:
    """Distribution summary of z-scores: composable listed pairs, all listed pairs, random head pairs (baseline)."""
    groups = {
        "listed pairs, SH in an earlier layer": result.zscores[result.composable],
        "all listed pairs": result.zscores.ravel(),
        "random head pairs (baseline)": result.baseline,
    }
    rows = [_distribution_row(name, values) for name, values in groups.items()]
    return pd.DataFrame(rows).set_index("pairs").round(2)


def _distribution_row(name: str, values: np.ndarray) -> dict:
    """Count, median, 5th / 95th percentiles, max and share above the seed's z > 2 rule of `values`."""
    if values.size == 0:
        return {"pairs": name, "n": 0}
    low, median, high = np.percentile(values, [5, 50, 95])
    return {
        "pairs": name,
        "n": int(values.size),
        "median": median,
        "5th pct": low,
        "95th pct": high,
        "max": float(values.max()),
        "share z > 2": float((values > SEED_Z_THRESHOLD).mean()),
    }


def matching_table(results: list[SubspaceMatching]) -> pd.DataFrame:
    """One row per comparison, score and rank: listed median, both baselines' 95th percentiles, and how to read it."""
    rows = []
    for result in results:
        for row in result.summary():
            heads = result.head_baseline[result.methods.index(row["method"]), result.ranks.index(row["rank"])]
            rows.append(
                {
                    "comparison": result.mode,
                    "score": row["method"],
                    "rank": row["rank"],
                    "listed median": row["listed_median"],
                    "random heads 95th": row["heads_q95"],
                    "Gaussian 95th": row["gaussian_q95"],
                    "percentile in random heads": float(percentile_of(np.array(row["listed_median"]), heads)),
                    "reading": matching_reading(row),
                }
            )
    return pd.DataFrame(rows).set_index("comparison").round(3)


def repetition_table(sweep: ShuffleSweep, real: list) -> pd.DataFrame:
    """One row per K, condition and repetition of a shuffle sweep: error, probability and `intact_heads(real)`."""
    rows = []
    for condition in CONDITIONS:
        errs, probs = per_repetition(sweep.errs[condition]), per_repetition(sweep.probs[condition])
        for k, K in enumerate(sweep.Ks):
            for r in range(sweep.settings.n_exp):
                pairs = [] if condition == "original" else sweep.pairs[condition][k][r]
                rows.append(
                    {
                        "K": K,
                        "condition": condition,
                        "repetition": r,
                        "err": float(errs[k, r]),
                        "prob": float(probs[k, r]),
                        "intact real heads": intact_heads(pairs, real),
                    }
                )
    return pd.DataFrame(rows)


def shuffle_table(
    sweep: ShuffleSweep,
    scores: HeadScores,
    *,
    fraction: float = FRACTION,
    margin: float = MARGIN,
    tolerance: float = 0.1,
) -> pd.DataFrame:
    """Per K of a sweep: counting heads among the K, error of each condition, readings and intact counting heads."""
    kind, summary = sweep.kind, sweep.summary
    real = counting_heads(scores, kind, fraction=fraction, margin=margin)
    rows = []
    for k, K in enumerate(sweep.Ks):
        row = {"K": K, f"{kind} heads among the K": sum(h in real for h in sweep.heads[:K])}
        for condition in CONDITIONS:
            row[f"error: {condition}"] = format_interval(Interval.of(summary[condition]["err"], k))
        for condition in CONDITIONS[1:]:
            row[f"{condition}: reading"] = read_error_change(
                Interval.of(summary[condition]["err_change"], k), tolerance
            )
            row[f"{condition}: intact {kind} heads"] = round(repetition_intact(sweep, real, condition, k), 2)
        rows.append(row)
    return pd.DataFrame(rows).set_index("K")


def _edit_name(result: ProjectionResult) -> str:
    """Name a projection edit, e.g. "QK: project out of W_K"."""
    where = "W_K" if result.component == "QK" else "W_O"
    return f"{result.component}: {'project out of' if result.project_out else 'keep only in'} {where}"


def projection_table(results: list[ProjectionResult], *, tolerance: float = 0.1) -> pd.DataFrame:
    """One row per projection result: first decisive rank, killed rank, plateau, errors and energies at a rank."""
    rows = []
    for result in results:
        if result.untested:
            rows.append({"edit": _edit_name(result), "heads edited": len(result.heads), "not tested": result.untested})
            continue
        summary, rank = result.summary, decisive_rank(result, tolerance=tolerance)
        shown = rank if rank is not None else result.ranks[-1]
        i = result.ranks.index(shown)
        row = {
            "edit": _edit_name(result),
            "fitting": result.fitting,
            "heads edited": len(result.heads),
            "unedited error": format_interval(Interval.of(summary["common subspace"]["err"], 0)),
            "first decisive rank": rank if rank is not None else f"none up to {result.ranks[-1]}",
            "killed from rank": killed_rank(result) if result.project_out else "",
            "plateau": round(plateau(result), 2),
            "rank shown": shown,
        }
        for s in SUBSPACES:
            row[f"error: {s}"] = format_interval(Interval.of(summary[s]["err"], i))
            row[f"energy {result.energy_word}: {s}"] = round(result.energy[s][i], 2)
        if result.overlap:
            row["overlap with the common subspace: energy-matched"] = round(result.overlap["energy-matched"][i], 2)
        bad = [str(r) for r, heads in zip(result.ranks, result.uninformative, strict=True) if heads]
        row["ranks not informative"] = ", ".join(bad) or "none"
        rows.append(row)
    return pd.DataFrame(rows).set_index("edit")


def fitting_table(results: list[ProjectionResult]) -> pd.DataFrame:
    """The fitting schemes side by side, one row per (edit, scheme) and swept rank: top-1 error of the common
    subspace and of its energy-matched control, the share of energy they remove (or keep) and their overlap."""
    rows = []
    for result in results:
        if result.untested:
            continue
        summary = result.summary
        for i, rank in enumerate(result.ranks[1:], start=1):
            bad = result.uninformative[i] if result.uninformative else []
            rows.append(
                {
                    "edit": _edit_name(result),
                    "fitting": result.fitting,
                    "rank": rank,
                    "error: common subspace": format_interval(Interval.of(summary["common subspace"]["err"], i)),
                    "error: energy-matched": format_interval(Interval.of(summary["energy-matched"]["err"], i)),
                    f"energy {result.energy_word}": round(result.energy["common subspace"][i], 2),
                    "overlap": round(result.overlap["energy-matched"][i], 2),
                    "not informative for": ", ".join(head_label(*h) for h in bad),
                }
            )
    return pd.DataFrame(rows).set_index(["edit", "fitting", "rank"])


def effects_table(effects: dict[str, dict[str, Effect]], groups: dict[str, PairGroup] | None = None) -> pd.DataFrame:
    """One row per statistic (in words) and control (its pairs and mean, in words that wrap, so that the table fits
    the text column): the listed mean, the difference with its head-resampled 95% interval, Cohen's d with the
    one-sided p, and whether it is clear.

    `groups` (optional) adds a row per control that does not exist, with the reason.
    """
    rows = [
        {
            "statistic": STATISTICS.get(stat, stat),
            "control": f"{name}: {e.n_control} pairs, mean {e.control_mean:.3f}",
            "listed mean": f"{e.listed_mean:.3f}",
            "difference [95% interval]": f"{e.difference:+.3f} [{e.low:+.3f}, {e.high:+.3f}]",
            "Cohen's d (p)": f"{e.standardized:.2g} ({e.p_value:.2g})",
            "clear": e.clear,
        }
        for stat, by_control in effects.items()
        for name, e in by_control.items()
    ]
    for name, group in (groups or {}).items():
        if name != "listed" and not group.exists:
            rows.append({"statistic": "-", "control": f"{name}: 0 pairs", "clear": group.note})
    return pd.DataFrame(rows).set_index(["statistic", "control"])


def shuffle_controls_table(result: ShuffleControls, *, tolerance: float = 0.1) -> pd.DataFrame:
    """One row per condition of `shuffle_controls`: error, error change and its reading; absent controls say why."""
    summary = result.summary
    rows = [
        {
            "condition": c,
            "error": format_interval(Interval.of(summary[c]["err"])),
            "error change": format_interval(Interval.of(summary[c]["err_change"]), signed=True),
            "reading": read_error_change(Interval.of(summary[c]["err_change"]), tolerance) if c != "original" else "",
        }
        for c in summary
    ]
    rows += [{"condition": c, "error": "absent", "reading": why} for c, why in result.absent.items()]
    return pd.DataFrame(rows).set_index("condition")
