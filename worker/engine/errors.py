"""The engine's typed errors: the input cannot be explained as given."""


class ExplainError(ValueError):
    """Base class of the engine's typed errors."""


class ImageError(ExplainError):
    """The image does not fit the model (rank, size, channels, dtype, non-finite or out-of-range pixels)."""


class ModelOutputError(ExplainError):
    """The predict function did not return one probability vector per image."""
