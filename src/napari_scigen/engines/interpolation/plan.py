"""Which slices an interpolation keeps and which it synthesizes, shared by every engine.

:func:`plan_slices` turns a request (``missing`` slice indices, or an integer z
upsampling ``factor``) into a :class:`SlicePlan`: the output length, the kept slices
(copied bit for bit) and the gaps between kept neighbours with the fraction ``t`` of
each synthesized slice. Missing slices at the volume boundary are an error:
interpolation never extrapolates.

:func:`drop_every` and :func:`keep_every` build the two held-out geometries the
validation workflow uses: one slice in ``G`` removed, or only every ``G``-th kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from ...core.indices import is_index
from ...core.upsampling import factor_fraction, upsampled_length
from ...core.validation import InvalidInputError


@dataclass(frozen=True)
class Gap:
    """Two kept source slices and the output slices synthesized between them.

    Attributes
    ----------
    below, above : int
        Source indices of the kept neighbours.
    targets : tuple of (int, float)
        ``(output index, fraction t)`` of every slice synthesized in the gap;
        ``t = 0`` is ``below``, ``t = 1`` is ``above``.
    """

    below: int
    above: int
    targets: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SlicePlan:
    """What an interpolation engine does to a volume.

    Attributes
    ----------
    n_out : int
        Number of output slices.
    kept : tuple of (int, int)
        ``(source index, output index)`` of every kept slice.
    gaps : tuple of Gap
        The gaps with at least one synthesized slice, bottom to top.
    factor : int, float or None
        The z upsampling factor (``None`` in missing-slice mode); an ``int`` when whole.
    """

    n_out: int
    kept: tuple[tuple[int, int], ...]
    gaps: tuple[Gap, ...]
    factor: int | float | None = None

    @property
    def synthesized(self) -> list[int]:
        """Output indices of the synthesized slices, bottom to top."""
        return [target for gap in self.gaps for target, _ in gap.targets]

    @property
    def n_synthesized(self) -> int:
        """Number of synthesized slices."""
        return sum(len(gap.targets) for gap in self.gaps)

    def provenance(self) -> dict:
        """The plan's record for provenance (the keys every interpolation engine writes)."""
        return {
            "synthesized_indices": self.synthesized,
            "kept_source_indices": [source for source, _ in self.kept],
            "kept_output_indices": [target for _, target in self.kept],
            "neighbour_pairs": [[gap.below, gap.above] for gap in self.gaps],
            "boundary_policy": "error",
        }


def _factor_plan(n_slices: int, factor) -> SlicePlan:
    """The plan of a z upsampling; output slice ``j`` lies at source position ``j / F``."""
    fraction = factor_fraction(factor)
    p, q = fraction.numerator, fraction.denominator
    n_out = upsampled_length(n_slices, fraction)
    kept = tuple((j * q // p, j) for j in range(n_out) if (j * q) % p == 0)
    targets: dict[int, list[tuple[int, float]]] = {}
    for j in range(n_out):
        if (j * q) % p:
            below = j * q // p
            targets.setdefault(below, []).append((j, (j * q - below * p) / p))
    gaps = tuple(Gap(i, i + 1, tuple(targets[i])) for i in sorted(targets))
    value = int(fraction) if q == 1 else float(fraction)
    return SlicePlan(n_out, kept, gaps, factor=value)


def _check_missing(missing: Sequence[int]) -> tuple[int, ...]:
    indices = tuple(missing)
    if not indices:
        raise InvalidInputError("`missing` is empty: name at least one slice to rebuild")
    bad = [i for i in indices if not is_index(i)]
    if bad:
        raise InvalidInputError(f"`missing` must hold integer slice indices, got {bad}")
    negative = sorted({int(i) for i in indices if i < 0})
    if negative:
        raise InvalidInputError(f"`missing` holds negative slice indices {negative}")
    seen: set[int] = set()
    duplicated = sorted({int(i) for i in indices if i in seen or seen.add(i)})
    if duplicated:
        raise InvalidInputError(f"`missing` lists slice(s) {duplicated} more than once")
    return tuple(sorted(int(i) for i in indices))


def plan_slices(
    n_slices: int, *, missing: Sequence[int] | None = None, factor: int | None = None
) -> SlicePlan:
    """Plan an interpolation of a volume with ``n_slices`` slices.

    Parameters
    ----------
    n_slices : int
        Slices in the input volume (``>= 2``).
    missing : sequence of int, optional
        Slices to rebuild; the output keeps the input's shape. Every missing slice
        needs a kept slice below and above it.
    factor : int or float, optional
        Upsample along z by this factor: an integer ``>= 2`` (``n`` slices become
        ``(n - 1) * factor + 1``, original slice ``i`` lands at ``i * factor``) or a simple
        fraction ``> 1`` such as 2.5 (``floor((n - 1) * factor) + 1`` slices, output slice
        ``j`` at source position ``j / factor``; source slices that land on the output grid
        are kept, the others are only neighbours of the synthesized slices).

    Raises
    ------
    InvalidInputError
        Both or neither of ``missing``/``factor``; non-integer, negative, duplicated,
        out-of-range or boundary indices; a bad factor; fewer than 2 slices.
    """
    if n_slices < 2:
        raise InvalidInputError(
            f"volume needs at least 2 slices to interpolate between, got {n_slices}"
        )
    if (missing is None) == (factor is None):
        raise InvalidInputError(
            "give exactly one of `missing` (slice indices to rebuild) and `factor` (z upsampling)"
        )
    if factor is not None:
        return _factor_plan(n_slices, factor)

    indices = _check_missing(missing)
    out_of_range = [i for i in indices if i >= n_slices]
    if out_of_range:
        raise InvalidInputError(
            f"missing slice index(es) {out_of_range} out of range for a volume of "
            f"{n_slices} slices (valid: 0..{n_slices - 1})"
        )
    missing_set = set(indices)
    kept_indices = [i for i in range(n_slices) if i not in missing_set]
    if not kept_indices:
        raise InvalidInputError("every slice is listed as missing: nothing to interpolate from")
    boundary = [i for i in indices if i < kept_indices[0] or i > kept_indices[-1]]
    if boundary:
        raise InvalidInputError(
            f"missing slice(s) {boundary} lie at the volume boundary, with no kept slice on "
            f"one side (kept slices span {kept_indices[0]}..{kept_indices[-1]}); "
            "interpolation cannot extrapolate: crop the volume or keep those slices"
        )
    gaps = tuple(
        Gap(
            below, above, tuple((z, (z - below) / (above - below)) for z in range(below + 1, above))
        )
        for below, above in pairwise(kept_indices)
        if above - below > 1
    )
    return SlicePlan(n_slices, tuple((i, i) for i in kept_indices), gaps)


def _check_geometry_args(n_slices: int, every: int, offset: int, minimum_offset: int) -> None:
    for name, value, minimum in (
        ("n_slices", n_slices, 3),
        ("every", every, 2),
        ("offset", offset, minimum_offset),
    ):
        if not is_index(value) or value < minimum:
            raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def drop_every(n_slices: int, every: int, *, offset: int = 1) -> tuple[int, ...]:
    """Indices of every ``every``-th slice to hold out, never the first or last slice.

    Parameters
    ----------
    n_slices : int
        Number of slices in the volume (``>= 3``).
    every : int
        Hold out one slice in ``every`` (``>= 2``).
    offset : int
        Index of the first held-out slice (``>= 1``).

    Returns
    -------
    tuple of int
        ``offset, offset + every, ...`` below ``n_slices - 1``, so every held-out
        slice has kept neighbours on both sides (with ``every >= 2``).

    Raises
    ------
    InvalidInputError
        Bad arguments, or when no interior slice matches.

    Examples
    --------
    >>> drop_every(10, 3)
    (1, 4, 7)
    """
    _check_geometry_args(n_slices, every, offset, 1)
    indices = tuple(range(int(offset), int(n_slices) - 1, int(every)))
    if not indices:
        raise InvalidInputError(
            f"no interior slice to hold out with n_slices={n_slices}, every={every}, "
            f"offset={offset}"
        )
    return indices


def keep_every(n_slices: int, every: int, *, offset: int = 0) -> tuple[int, ...]:
    """Indices to rebuild when only slices ``offset, offset + every, ...`` are kept.

    The realistic z-upsampling test: with ``every = G`` the ``G - 1`` slices between
    two kept ones are rebuilt. Slices before ``offset`` and after the last kept slice
    have no kept neighbour on one side; they stay kept (and are not scored).

    Parameters
    ----------
    n_slices : int
        Number of slices in the volume (``>= 3``).
    every : int
        Keep one slice in ``every`` (``>= 2``).
    offset : int
        Index of the first kept slice (``>= 0``).

    Returns
    -------
    tuple of int

    Raises
    ------
    InvalidInputError
        Bad arguments, or fewer than two kept slices.

    Examples
    --------
    >>> keep_every(10, 4)
    (1, 2, 3, 5, 6, 7)
    """
    _check_geometry_args(n_slices, every, offset, 0)
    kept = list(range(int(offset), int(n_slices), int(every)))
    if len(kept) < 2:
        raise InvalidInputError(
            f"keeping every {every}th slice from {offset} leaves fewer than two kept slices "
            f"in {n_slices}; lower every or use a longer volume"
        )
    return tuple(z for z in range(kept[0], kept[-1]) if (z - kept[0]) % int(every))
