"""The seed notebook's one-call functions, with its names, argument order and return shapes.

Each is compute, then (when `save_dir` is given) plot and save, built from the pure steps of the claim
modules; figures are closed after saving. A cell of the seed runs with `from ihlib import ...` in place of
`from analysis_utils import ...`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ihlib.claims.diagonal import QKOVMatching, qkov_blocks, qkov_zscores
from ihlib.claims.projection import project
from ihlib.claims.shuffling import shuffle
from ihlib.claims.subspaces import METHODS, match_subspaces
from ihlib.core.copying import CopyingSettings, check_configuration
from ihlib.core.factored import head_subspaces
from ihlib.model.loading import AnyGPT2
from ihlib.report.plots_experiments import plot_projection, plot_shuffle
from ihlib.report.plots_weights import plot_qkov_blocks, plot_qkov_zscores, plot_subspace_matching
from ihlib.report.saving import Result, create_folder, save_result

__all__ = ["create_folder", "project_exp", "qkov_matching", "qkov_matching_summary", "shuffle_exp", "subspace_matching"]


def _save_and_close(result: Result, save_dir: str | Path | None, plot: object) -> None:
    """When `save_dir` is given: draw `plot(result)`, save the result with its figures, close the figures."""
    if save_dir is None:
        return
    figures = plot(result)
    save_result(result, save_dir, figures)
    for fig in figures.values():
        plt.close(fig)


def _checked_folder(save_dir: str | Path | None) -> str | Path | None:
    """Create `save_dir` before any computation, so that a bad path fails first; None stays None."""
    if save_dir is not None:
        create_folder(save_dir)
    return save_dir


def qkov_matching(
    W_all: torch.Tensor,
    IH_list: list,
    save_dir: str | Path | None = None,
    Shifting_list: list | None = None,
    n_partners: int = 2,
    W_E: torch.Tensor | np.ndarray | None = None,
    block: int = 64,
) -> QKOVMatching:
    """The seed's call: heatmaps of `W_qkov` per IH and `n_partners` earlier partners (`diagonal.qkov_blocks`)."""
    save_dir = _checked_folder(save_dir)
    result = qkov_blocks(W_all, IH_list, Shifting_list=Shifting_list, n_partners=n_partners, W_E=W_E, block=block)
    _save_and_close(result, save_dir, plot_qkov_blocks)
    return result


def qkov_matching_summary(
    W_all: torch.Tensor,
    IH_list: list,
    Shifting_list: list,
    save_dir: str | Path | None = None,
    num_samp: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """The seed's call: diagonal z-scores `(K0, K1)`; saves heatmap, histogram (random-pair baseline) and data."""
    save_dir = _checked_folder(save_dir)
    result = qkov_zscores(W_all, IH_list, Shifting_list, num_samp=num_samp, seed=seed)
    _save_and_close(result, save_dir, plot_qkov_zscores)
    return result.zscores


def subspace_matching(
    W_all: torch.Tensor,
    save_dir: str | Path | None = None,
    IH_list: list | None = None,
    Shifting_list: list | None = None,
    ranks: tuple[int, ...] | list[int] = (2, 3, 5, 10),
    methods: tuple[str, ...] | list[str] = METHODS,
    num_samp: int = 50,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed's call: `(s_match (M, R, K0, K1), match_baseline (M, R, num_samp))`, Gaussian baseline."""
    save_dir = _checked_folder(save_dir)
    subspaces = head_subspaces(W_all, max(ranks) if ranks else None)
    result = match_subspaces(
        subspaces,
        IH_list=IH_list,
        Shifting_list=Shifting_list,
        ranks=ranks,
        methods=methods,
        num_samp=num_samp,
        seed=seed,
    )
    _save_and_close(result, save_dir, plot_subspace_matching)
    return result.s_match, result.gaussian_baseline


def shuffle_exp(
    model: AnyGPT2,
    configuration: object | None,
    seg_len: int,
    vocab_size: int,
    heads: list,
    save_dir: str | Path | None,
    component: str = "QK",
    n_exp: int = 10,
    batch_size: int = 50,
    rep: int = 3,
    seed: int = 0,
    burn_in: int = 4,
    bos_token_id: int | None = None,
    pool: list | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The seed's call: `(probs, errs)`, each `{"original", "shuffle", "random baseline": (n_exp, batch, n_pos)}`."""
    check_configuration(model, configuration)
    save_dir = _checked_folder(save_dir)
    settings = CopyingSettings(seg_len, rep, batch_size, burn_in, n_exp, seed, vocab_size, bos_token_id)
    options = dict(pool=pool, chunk_size=chunk_size, progress=progress)
    result = shuffle(model, heads, component=component, settings=settings, **options)
    _save_and_close(result, save_dir, plot_shuffle)
    return result.probs, result.errs


def project_exp(
    model: AnyGPT2,
    configuration: object | None,
    W_all: torch.Tensor,
    seg_len: int,
    vocab_size: int,
    IH_proj: list,
    heads: list,
    save_dir: str | Path | None,
    component: str = "QK",
    project_out: bool = True,
    max_rank: int = 100,
    step: int = 5,
    n_exp: int = 5,
    batch_size: int = 50,
    rep: int = 3,
    seed: int = 0,
    burn_in: int = 4,
    bos_token_id: int | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The seed's call: `(probs, errs)`, each `{"common subspace", "random subspace": (n_ranks, n_exp, b, n_pos)}`."""
    check_configuration(model, configuration)
    save_dir = _checked_folder(save_dir)
    settings = CopyingSettings(seg_len, rep, batch_size, burn_in, n_exp, seed, vocab_size, bos_token_id)
    result = project(
        model,
        W_all,
        IH_proj,
        heads,
        component=component,
        project_out=project_out,
        max_rank=max_rank,
        step=step,
        settings=settings,
        chunk_size=chunk_size,
        progress=progress,
    )
    _save_and_close(result, save_dir, plot_projection)
    return result.probs, result.errs
