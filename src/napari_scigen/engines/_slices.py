"""Which slices of a volume a per-slice engine processes."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.validation import InvalidInputError


def select_slices(n_slices: int, slices: Iterable[int] | None) -> set[int]:
    """The chosen slice indices (``None`` = all), checked against the volume depth.

    Raises
    ------
    InvalidInputError
        Indices outside ``0..n_slices - 1`` or an empty selection.
    """
    if slices is None:
        return set(range(n_slices))
    chosen = {int(z) for z in slices}
    bad = sorted(z for z in chosen if not 0 <= z < n_slices)
    if bad:
        raise InvalidInputError(f"slice index(es) {bad} outside 0..{n_slices - 1}")
    if not chosen:
        raise InvalidInputError("the slice selection is empty")
    return chosen
