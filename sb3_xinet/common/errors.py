"""The package's own exceptions: each is a ValueError, as every bad input here, and also the exception type SB3
raises for the same case, so that code written against SB3 catches it too."""


class UnsupportedSpaceError(ValueError, AssertionError):
    """An observation or action space the XiNet algorithms cannot read (SB3 asserts its supported spaces)."""


class PrunedShapeError(ValueError, RuntimeError):
    """Parameters whose shapes do not fit the model's (pruned) networks (SB3's ``set_parameters`` raises torch's
    RuntimeError for a state dict that does not fit)."""
