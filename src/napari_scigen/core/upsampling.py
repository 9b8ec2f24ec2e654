"""z upsampling factors: whole numbers or simple fractions, and the output length.

Shared by the interpolation plan (:mod:`napari_scigen.engines.interpolation.plan`) and the
memory checks made before any planning (:mod:`napari_scigen.core.io.memory`).

Examples
--------
>>> factor_fraction(2.5)
Fraction(5, 2)
>>> upsampled_length(5, 2.5)
11
"""

from __future__ import annotations

import math
from fractions import Fraction

from .indices import is_index
from .validation import InvalidInputError

#: Largest denominator of a non-integer z upsampling factor (2.5 = 5/2, 1.75 = 7/4, ...).
MAX_FACTOR_DENOMINATOR = 8


def factor_fraction(factor) -> Fraction:
    """``factor`` as an exact fraction ``p / q`` (``q <= 8``), or a clear error.

    Whole factors must be ``>= 2``; a non-integer factor must exceed 1 and be a simple
    fraction (``2.5``, ``1.5``, ``3.25``): output slice ``j`` lies at source position
    ``j / factor``, and only a simple fraction puts source slices back on the output grid
    regularly.

    Raises
    ------
    InvalidInputError
    """
    if (
        isinstance(factor, bool)
        or not isinstance(factor, (int, float, Fraction))
        and not hasattr(factor, "__index__")
        and not hasattr(factor, "__float__")
    ):
        raise InvalidInputError(f"factor must be a number > 1, got {factor!r}")
    value = float(factor)
    if not math.isfinite(value):
        raise InvalidInputError(f"factor must be a finite number > 1, got {factor!r}")
    if is_index(factor) or value.is_integer():
        if value < 2:
            raise InvalidInputError(
                f"factor must be an integer >= 2 or a fraction > 1, got {factor!r}"
            )
        return Fraction(int(value))
    if value <= 1:
        raise InvalidInputError(f"factor must be > 1, got {factor!r}")
    fraction = Fraction(value).limit_denominator(MAX_FACTOR_DENOMINATOR)
    if abs(float(fraction) - value) > 1e-9 * value:
        raise InvalidInputError(
            f"factor {factor!r} is not a simple fraction: use a whole number or p/q with q <= "
            f"{MAX_FACTOR_DENOMINATOR} (e.g. 2.5, 1.5, 3.25)"
        )
    return fraction


def upsampled_length(n_slices: int, factor) -> int:
    """Output slices of a z upsampling of ``n_slices`` by ``factor``: ``floor((n - 1) F) + 1``."""
    fraction = factor_fraction(factor)
    return (n_slices - 1) * fraction.numerator // fraction.denominator + 1
