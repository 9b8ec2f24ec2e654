"""Parsing of slice-index lists typed by users (CLI and widgets)."""

from __future__ import annotations


def parse_indices(text: str, n: int | None = None) -> tuple[int, ...]:
    """Parse ``"3, 5, 10-12"`` into ``(3, 5, 10, 11, 12)``.

    Raises
    ------
    ValueError
        With the offending token, or when an index is outside ``[0, n)``.
    """
    indices: list[int] = []
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if not token:
            continue
        try:
            if "-" in token:
                first, last = (int(part) for part in token.split("-", 1))
                if last < first:
                    raise ValueError
                indices.extend(range(first, last + 1))
            else:
                indices.append(int(token))
        except ValueError:
            raise ValueError(f"cannot read slice index {token!r}; use e.g. '3, 5, 10-12'") from None
    if n is not None:
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"slice indices {bad} are outside 0..{n - 1}")
    return tuple(indices)
