"""Claims 1 and 2 accept any weights tensor: requiring grad, non-contiguous, or beside another default device.

No GPU is needed: under `torch.device("meta")` every tensor created without an explicit device lands on the meta
device, so a cache or constant not placed on the input's device (or moved to the CPU) makes the run fail.
What this cannot check: CUDA/MPS kernels themselves, and float64 support on MPS (the code runs float64 on the CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ihlib.claims.diagonal import qkov_blocks, qkov_zscores
from ihlib.claims.subspaces import head_spectra, match_subspaces
from ihlib.core.factored import head_subspaces, stacked_qk_svd

IH = [[2, 1], [2, 3], [1, 0]]
SH = [[0, 2], [1, 1], [0, 0]]


@pytest.fixture(scope="module")
def W_all() -> torch.Tensor:
    """Random float32 `W_all (3, 4, 4, 32, 8)`, contiguous and without grad."""
    return torch.randn(3, 4, 4, 32, 8, generator=torch.Generator().manual_seed(0))


def awkward(W: torch.Tensor) -> torch.Tensor:
    """The same values as a non-contiguous view of a leaf that requires grad."""
    leaf = W.transpose(-1, -2).contiguous().requires_grad_()
    view = leaf.transpose(-1, -2)
    assert not view.is_contiguous() and view.requires_grad
    return view


def claim_numbers(W: torch.Tensor) -> dict[str, np.ndarray]:
    """Claim 1 (z-scores, baseline, blocks) and claim 2 (matching, baselines, spectra, stacked SVD) as arrays."""
    zscores = qkov_zscores(W, IH, SH, num_samp=12, seed=1)
    blocks = qkov_blocks(W, IH, Shifting_list=SH, n_partners=1, block=4)
    searched = qkov_blocks(W, IH, n_partners=1, block=4)
    matching = match_subspaces(head_subspaces(W, 3), IH_list=IH, Shifting_list=SH, ranks=[1, 3], num_samp=6, seed=2)
    spectra = head_spectra(head_subspaces(W), IH, SH)
    S, V = stacked_qk_svd(W, IH)
    return {
        "zscores": zscores.zscores,
        "z_baseline": zscores.baseline,
        "blocks": blocks.residual_blocks,
        "searched_z": searched.residual_z,
        "s_match": matching.s_match,
        "head_baseline": matching.head_baseline,
        "gaussian_baseline": matching.gaussian_baseline,
        "key_spectra": spectra.everyone["key"],
        "stacked_S": S.numpy(),
        "stacked_V": np.abs(V.numpy()),
    }


FLOAT32_GRAM_NUMBERS = {"s_match", "head_baseline", "key_spectra", "zscores", "z_baseline"}  # float32: ~1e-6 by layout


def assert_same_numbers(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Every array equal to 1e-12, or 5e-6 for numbers from float32 Grams (each ~1e-6 from the float64 answer)."""
    assert got.keys() == expected.keys()
    for name in expected:
        atol = 5e-6 if name in FLOAT32_GRAM_NUMBERS else 1e-12
        np.testing.assert_allclose(got[name], expected[name], atol=atol, err_msg=name)


def test_claims_accept_weights_that_require_grad_and_are_not_contiguous(W_all):
    """A non-contiguous view that requires grad gives the same claim 1 and 2 numbers as plain weights."""
    assert_same_numbers(claim_numbers(awkward(W_all)), claim_numbers(W_all))


def test_claims_create_every_tensor_on_the_input_device_or_the_cpu(W_all):
    """With the meta device as default, claims 1 and 2 on CPU weights still give the plain numbers."""
    expected = claim_numbers(W_all)
    with torch.device("meta"):
        got = claim_numbers(awkward(W_all))
    assert_same_numbers(got, expected)


def test_half_precision_weights_take_their_grams_in_float32(W_all):
    """float16 / bfloat16 weights (a model loaded in half precision) give the subspaces of their float32 values."""
    for dtype in (torch.float16, torch.bfloat16):
        half = head_subspaces(W_all.to(dtype), 3)
        upcast = head_subspaces(W_all.to(dtype).float(), 3)
        for side in ("key", "output"):
            assert torch.equal(half.bases_by_side[side], upcast.bases_by_side[side])
            assert torch.equal(half.values_by_side[side], upcast.values_by_side[side])
