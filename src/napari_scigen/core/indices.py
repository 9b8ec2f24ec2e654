"""Slice indices: the one grammar users type (CLI and widgets) and strict API checks.

Typed selections (:func:`parse_slice_selection`), the same in every front-end:

* ``"all"`` (or empty): every slice;
* ``"current"``: the slice shown in the viewer (widgets only);
* ``"START:STOP"``: a Python-style range, ``STOP`` excluded (``"10:20"``, ``":5"``);
* ``"3, 5, 10-12"``: single indices and inclusive ranges.

Index lists given to the API from code are checked by :func:`check_indices`, which
refuses anything that is not a whole number (``2.7``, ``True``, ``"12"``) instead of
coercing it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .validation import InvalidInputError

#: Help text for a slice-selection field or flag.
SLICES_HELP = (
    "'all', 'current' (the slice shown; widgets only), 'START:STOP' (stop excluded) "
    "or indices such as '3, 5, 10-12'"
)


#: The longest inclusive range ``"A-B"`` accepted when the number of slices is unknown.
MAX_RANGE_LENGTH = 1_000_000


def _token_error(token: str) -> InvalidInputError:
    return InvalidInputError(
        f"cannot read slice index {token!r}; use e.g. '3, 5, 10-12' or '10:20'"
    )


def _check_range(indices: Iterable[int], n: int | None) -> None:
    if n is None:
        return
    bad = sorted({i for i in indices if not 0 <= i < n})
    if bad:
        raise InvalidInputError(f"slice indices {bad} are outside 0..{n - 1}")


def parse_indices(text: str, n: int | None = None) -> tuple[int, ...]:
    """Parse ``"3, 5, 10-12"`` into ``(3, 5, 10, 11, 12)`` (order kept).

    Raises
    ------
    InvalidInputError
        With the offending token, or when an index is outside ``[0, n)``.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"slice indices must be text like '3, 5, 10-12', got {text!r}")
    indices: list[int] = []
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if not token:
            continue
        first, dash, last = token.partition("-")
        try:
            if not (dash and first.strip()):
                indices.append(int(token))
                continue
            low, high = int(first), int(last)
        except ValueError:
            raise _token_error(token) from None
        if high < low:
            raise _token_error(token)
        _check_range((low, high), n)  # before building the range: '0-99999999999'
        if high - low >= MAX_RANGE_LENGTH:
            raise InvalidInputError(
                f"slice range {token!r} is longer than {MAX_RANGE_LENGTH:,} slices"
            )
        indices.extend(range(low, high + 1))
    _check_range(indices, n)
    return tuple(indices)


def parse_slice_selection(
    text: str | None, n_slices: int, *, current: int | None = None
) -> tuple[int, ...] | None:
    """Turn a typed slice selection into sorted indices (``None`` = every slice).

    Parameters
    ----------
    text : str or None
        See the module docstring for the grammar.
    n_slices : int
        Number of slices (1 for a 2D image).
    current : int, optional
        The slice shown in the viewer; ``"current"`` is an error without it.

    Raises
    ------
    InvalidInputError
        Unreadable text, out-of-range indices or an empty selection.
    """
    value = (text or "").strip().lower()
    if value in ("", "all"):
        return None
    if value in ("current", "current slice"):
        if current is None:
            raise InvalidInputError("'current' needs a viewer; give indices such as '3-7'")
        return (int(current),)
    if ":" in value:
        start_text, _, stop_text = value.partition(":")
        try:
            start = int(start_text) if start_text.strip() else 0
            stop = int(stop_text) if stop_text.strip() else n_slices
        except ValueError:
            raise _token_error(value) from None
        if not 0 <= start < stop <= n_slices:
            raise InvalidInputError(
                f"slice range {text!r} must satisfy 0 <= START < STOP <= {n_slices}"
            )
        return tuple(range(start, stop))
    indices = parse_indices(value, n_slices)
    if not indices:
        raise InvalidInputError(f"no slice selected by {text!r}; {SLICES_HELP}")
    return tuple(sorted(set(indices)))


def is_index(value) -> bool:
    """Whether ``value`` is a whole number (a Python or NumPy integer, not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_indices(values, *, name: str = "missing", n: int | None = None) -> tuple[int, ...]:
    """Validate a sequence of slice indices given from code (no silent coercion).

    Parameters
    ----------
    values : sequence of int
        A list, tuple, range or 1D integer array.
    name : str
        The argument's name in messages.
    n : int, optional
        Number of slices; indices must be in ``[0, n)``.

    Returns
    -------
    tuple of int

    Raises
    ------
    InvalidInputError
        For a string, a scalar, floats (``2.7``), bools (``True``), or out-of-range values.
    """
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(
            f"{name} must be a list of slice indices, got the text {values!r}; "
            "parse typed text with parse_slice_selection"
        )
    if is_index(values):
        raise InvalidInputError(
            f"{name} must be a list of slice indices, got {values!r}; use [{values}]"
        )
    try:
        items = list(values)
    except TypeError:
        raise InvalidInputError(f"{name} must be a list of slice indices, got {values!r}") from None
    bad = [v for v in items if not is_index(v)]
    if bad:
        raise InvalidInputError(f"{name} must hold whole-number slice indices, got {bad}")
    indices = tuple(int(v) for v in items)
    _check_range(indices, n)
    return indices
