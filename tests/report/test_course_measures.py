"""Tables of the course measures: one row per condition, intervals kept as `Interval`, changes from intact."""

import numpy as np
import pytest
import torch
from conftest import random_gpt2

from ihlib.core.stats import Interval
from ihlib.report.course_measures import icl_table, layer_ablation_table
from ihlib.report.formatting import reading_frame
from ihlib.tools.ablation import AblationCopying, per_layer_ablations
from ihlib.tools.in_context import icl_score


def test_icl_table_has_one_row_per_condition_with_named_position_ranges():
    model = random_gpt2(n_pos=64)
    ids = torch.randint(0, 97, (4, 30), generator=torch.Generator().manual_seed(0))
    score = icl_score(model, ids, early=(2, 8), late=(20, 29), n_boot=100)
    frame = icl_table({"intact": score, "again": score})
    assert list(frame.columns) == ["condition", "ICL score", "loss at 2-7", "loss at 20-28"]
    assert frame["ICL score"][0] == score.score and len(frame) == 2
    assert frame["loss at 2-7"][0] == score.early_loss.mean


def test_layer_ablation_table_names_the_intact_model_and_keeps_intervals():
    conditions = per_layer_ablations([(1, 0), (2, 3)])
    error = np.array([0.1, 0.15, 0.6])
    copying = AblationCopying(
        conditions,
        error,
        error,
        error,
        error,
        error - 0.02,
        error + 0.03,
        np.zeros((3, 2)),
        np.zeros((3, 2)),
        np.arange(2),
        50,
    )
    frame = layer_ablation_table(copying)
    assert frame["condition"][0] == "intact" and frame["P(correct)"].tolist() == pytest.approx(error.tolist())
    assert frame["top-1 error"][2] == Interval(0.6, 0.58, 0.63)
    text = reading_frame(frame)
    assert not text.map(lambda cell: "nan" in cell or "None" in cell).any().any()
