"""Errors raised by ihlib, one small hierarchy under `IHLibError`, with messages that say what to do.

Every message names the argument (or file), the value it got, and the allowed range or the fix. Catch
`IHLibError` to catch them all; it is a `ValueError`, so code that caught `ValueError` keeps working.
"""


class IHLibError(ValueError):
    """Base class of every error ihlib raises on purpose."""


class ModelLoadError(IHLibError, OSError):
    """A model could not be loaded: wrong path, unreadable weights, another architecture, or missing tensors."""


class ParameterError(IHLibError):
    """An argument or book parameter has a value outside its allowed range or of the wrong type."""


class HeadError(ParameterError):
    """A list of `[layer, head]` pairs is malformed, out of range, or lists a head twice."""


class EditError(IHLibError):
    """A reversible weight edit was misused (exited out of order, or the model was moved or cast inside it)."""


class BookError(IHLibError):
    """The book runner got a bad command line, parameter file, toc or build folder."""


class ClaimNotTested(IHLibError):
    """The model lacks the heads a claim is about; the chapter stops after recording the verdict "not tested"."""
