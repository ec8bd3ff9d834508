"""The error hierarchy: one base class, exported names, and catchable as the built-in kinds callers used before."""

from __future__ import annotations

import pytest

import ihlib
from ihlib import errors


@pytest.mark.parametrize("name", ["ModelLoadError", "ParameterError", "HeadError", "EditError", "BookError"])
def test_every_error_is_an_ihlib_error_exported_from_ihlib(name):
    cls = getattr(errors, name)
    assert issubclass(cls, ihlib.IHLibError) and issubclass(cls, ValueError)
    assert getattr(ihlib, name) is cls and name in ihlib.__all__


def test_model_load_errors_are_os_errors_and_head_errors_are_parameter_errors():
    assert issubclass(ihlib.ModelLoadError, OSError)
    assert issubclass(ihlib.HeadError, ihlib.ParameterError)
