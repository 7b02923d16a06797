"""The package's error types: every bad input raises a subclass of :class:`MiMarginError`."""


class MiMarginError(ValueError):
    """Base class of every error mi_margin raises on bad input.

    The message names the offending value and the valid range, e.g.
    ``MiMarginError("p must be >= 2, got p=1")``.
    """


class CheckpointError(MiMarginError):
    """A saved model or run is missing, truncated or corrupted."""


class TrainingDivergedError(MiMarginError):
    """The loss became NaN or infinite; the message names the step."""


class MissingAttributeError(MiMarginError, AttributeError):
    """A model attribute that exists only for another configuration (``hasattr`` stays False)."""


class NotGeneralizedWarning(UserWarning):
    """An analysis of a model that has not generalized (its accuracy is named in the message);
    the result also records it (e.g. ``KeySet.generalized``)."""
