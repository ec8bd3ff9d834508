"""Errors raised by ihlib for bad input, with messages that say what to do."""


class IHLibError(ValueError):
    """Base class for ihlib input errors."""


class ModelLoadError(IHLibError, OSError):
    """A model could not be loaded by name or path."""
