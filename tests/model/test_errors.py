"""The error hierarchy: one base class, exported names, and catchable as the built-in kinds callers used before."""

from __future__ import annotations

import pytest

import ihlib
from ihlib.model import errors


@pytest.mark.parametrize("name", ["ModelLoadError", "ParameterError", "HeadError", "EditError", "BookError"])
def test_every_error_is_an_ihlib_error_exported_from_ihlib(name):
    cls = getattr(errors, name)
    assert issubclass(cls, ihlib.IHLibError) and issubclass(cls, ValueError)
    assert getattr(ihlib, name) is cls and name in ihlib.__all__


def test_model_load_errors_are_os_errors_and_head_errors_are_parameter_errors():
    assert issubclass(ihlib.ModelLoadError, OSError)
    assert issubclass(ihlib.HeadError, ihlib.ParameterError)


def test_head_list_problems_raise_head_error_naming_the_list():
    from ihlib.model.head_ids import check_heads, check_k

    with pytest.raises(errors.HeadError, match="IH_list contains layer 3: this model has layers 0..2"):
        check_heads([[3, 0]], (3, 4), name="IH_list")
    with pytest.raises(errors.HeadError, match="lists \\[0, 1\\] twice"):
        check_heads([[0, 1], [0, 1]], (3, 4))
    with pytest.raises(errors.HeadError, match="K=13 is out of range"):
        check_k(13, 12)
