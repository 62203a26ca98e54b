"""Argument checks that name the argument: a ValueError that says what is wrong, never a torch shape error later.

``bool`` is refused where a number is asked for: ``True`` is an ``int`` to Python, and a flag in a width or a
count is a mistake, not a 1.
"""

import math

import numpy as np


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int, if it is an integer (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_number(
    name: str, value: object, minimum: float | None = None, maximum: float | None = None, positive: bool = False
) -> float:
    """``value`` as a float, if it is a finite number (not a bool) in ``[minimum, maximum]`` (and > 0 if
    ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    low_ok = minimum is None or value >= minimum
    high_ok = maximum is None or value <= maximum
    if not (low_ok and high_ok) or (positive and value <= 0):
        bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
        bounds.append("> 0" if positive else "")
        raise ValueError(f"{name} must be a finite number {' and '.join(b for b in bounds if b)}, got {value!r}")
    return float(value)
