"""Shared figure and result-file helpers: head labels, saving figures and data next to each other."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def head_label(layer: int, head: int) -> str:
    """Return the label `L{layer}H{head}` used on every axis."""
    return f"L{int(layer)}H{int(head)}"


def head_labels(heads: list) -> list[str]:
    """Return `L{l}H{h}` labels for a list of `[layer, head]` pairs."""
    return [head_label(l, h) for l, h in heads]


def create_folder(path: str | Path) -> Path:
    """Create folder `path` (and parents) if missing; return it (the seed's helper)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def output_dir(save_dir: str | Path | None) -> Path | None:
    """Create and return `save_dir` as a Path, or None when results are not to be written."""
    if save_dir is None:
        return None
    return create_folder(save_dir)


def save_figure(fig: plt.Figure, save_dir: str | Path | None, name: str) -> plt.Figure:
    """Save `fig` as `save_dir/name.png` (150 dpi) when `save_dir` is given; return the figure."""
    path = output_dir(save_dir)
    if path is not None:
        fig.savefig(path / f"{name}.png", dpi=150, bbox_inches="tight")
    return fig


def save_arrays(save_dir: str | Path | None, name: str, **arrays: np.ndarray) -> Path | None:
    """Save named arrays to `save_dir/name.npz` when `save_dir` is given; return the path."""
    path = output_dir(save_dir)
    if path is None:
        return None
    target = path / f"{name}.npz"
    np.savez(target, **{k: np.asarray(v) for k, v in arrays.items()})
    return target


def save_json(save_dir: str | Path | None, name: str, record: dict) -> Path | None:
    """Save a JSON-serialisable `record` to `save_dir/name.json` when `save_dir` is given; return the path."""
    path = output_dir(save_dir)
    if path is None:
        return None
    target = path / f"{name}.json"
    target.write_text(json.dumps(record, indent=1, default=_to_builtin))
    return target


def _to_builtin(value: object) -> object:
    """Convert numpy scalars and arrays to JSON-friendly Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot serialise {type(value).__name__} to JSON.")
