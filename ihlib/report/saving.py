"""Saving results: data first (NPZ arrays, JSON record), figures next to them (PNG); nothing here computes.

A result is any object with a `name` (the file stem), `arrays()` (name -> array) and `record()` (a
JSON-friendly dict): every experiment's result type in `diagonal`, `subspaces`, `shuffling`, `projection`
and `scoring.HeadScores`. `save_result` writes `name.npz`, `name.json` and each figure as `<key>.png`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ihlib.model.errors import IHLibError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ihlib.heads.scoring import HeadScores


class Result(Protocol):
    """What `save_result` needs of a result."""

    @property
    def name(self) -> str: ...

    def arrays(self) -> dict[str, np.ndarray]: ...

    def record(self) -> dict: ...


def create_folder(path: str | Path) -> Path:
    """Create folder `path` (and parents) if missing; return it (the seed's helper)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise IHLibError(f"save_dir {str(folder)!r} is a file: pass a folder path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IHLibError(
            f"save_dir {str(folder)!r} cannot be created ({err.strerror}): pass a writable folder."
        ) from err
    return folder


def save_figures(figures: dict[str, Figure], save_dir: str | Path) -> dict[str, Path]:
    """Save each figure as `save_dir/<key>.png` (150 dpi); return the paths."""
    folder = create_folder(save_dir)
    paths = {}
    for name, fig in figures.items():
        paths[name] = folder / f"{name}.png"
        fig.savefig(paths[name], dpi=150, bbox_inches="tight")
    return paths


def save_arrays(save_dir: str | Path, name: str, **arrays: np.ndarray) -> Path:
    """Save named arrays to `save_dir/name.npz`; return the path."""
    target = create_folder(save_dir) / f"{name}.npz"
    np.savez(target, **{k: np.asarray(v) for k, v in arrays.items()})
    return target


def save_json(save_dir: str | Path, name: str, record: dict | list) -> Path:
    """Save a JSON-serialisable `record` to `save_dir/name.json`; return the path."""
    target = create_folder(save_dir) / f"{name}.json"
    target.write_text(json.dumps(record, indent=1, default=_to_builtin))
    return target


def _to_builtin(value: object) -> object:
    """Convert numpy scalars and arrays to JSON-friendly Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot serialise {type(value).__name__} to JSON.")


def save_result(result: Result, save_dir: str | Path, figures: dict[str, Figure] | None = None) -> dict[str, Path]:
    """Save a result's arrays (`name.npz`), record (`name.json`) and `figures` (`<key>.png`) to `save_dir`."""
    paths = {
        "npz": save_arrays(save_dir, result.name, **result.arrays()),
        "json": save_json(save_dir, result.name, result.record()),
    }
    return paths | save_figures(figures or {}, save_dir)


def write_rankings(scores: HeadScores, save_dir: str | Path) -> dict[str, Path]:
    """Write the seed's ranking text files `{induction,shifting}_head_scores.txt` to `save_dir`; return the paths."""
    folder = create_folder(save_dir)
    paths = {}
    for kind, ranking in (("induction", scores.IH_list), ("shifting", scores.Shifting_list)):
        values = getattr(scores, kind)
        lines = [f"Ranking {kind} heads (most likely to unlikely) by attention scores"]
        lines += [f"Layer {l} Head {h}: score {values[l, h]}" for l, h in ranking]
        paths[kind] = folder / f"{kind}_head_scores.txt"
        paths[kind].write_text("\n".join(lines) + "\n")
    return paths
