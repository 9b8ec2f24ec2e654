"""Which rows are known, how gaps are filled linearly, and which kept slices can be held out.

Everything the learned interpolation does happens on the *output grid*: ``n_out`` slices
of which those in ``known`` are real (kept) and the others are synthesized (see
:class:`~napari_scigen.engines.interpolation.plan.SlicePlan`). A 2D plane through the
volume containing the z axis (an xz or yz plane) then has known and unknown *rows*; so
has an xy slice whose rows are dropped to mimic the z spacing. This module is NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..interpolation.plan import SlicePlan


@dataclass(frozen=True)
class Grid:
    """The output grid of an interpolation job, in the network's intensity units.

    Attributes
    ----------
    volume : numpy.ndarray or KnownRows
        ``(n_out, Y, X)`` float32; kept slices scaled by ``(value - low) / (high - low)``,
        synthesized slices 0 (a :class:`KnownRows` computes the rows it is asked for).
    known : numpy.ndarray
        ``(n_out,)`` bool, True on kept slices.
    low, high : float
        The intensity window mapped to 0 and 1 (0.5 and 99.5 percentiles of the kept
        slices).
    """

    volume: np.ndarray | KnownRows
    known: np.ndarray
    low: float
    high: float

    def to_data(self, values: np.ndarray) -> np.ndarray:
        """Network units back to the data's scale (float64)."""
        return np.asarray(values, dtype=np.float64) * (self.high - self.low) + self.low


def make_grid(array: np.ndarray, plan: SlicePlan) -> Grid:
    """The output grid of ``plan`` with the kept slices of ``array`` in network units."""
    sources = [source for source, _ in plan.kept]
    sample = array[sources[:: max(1, len(sources) // 16)]]
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if high <= low:
        low, high = float(array.min()), float(array.max())
    if high <= low:
        high = low + 1.0
    volume = np.zeros((plan.n_out, *array.shape[1:]), dtype=np.float32)
    known = np.zeros(plan.n_out, dtype=bool)
    for source, target in plan.kept:
        volume[target] = grid_units(array[source], low, high)
        known[target] = True
    return Grid(volume, known, low, high)


def grid_units(rows: np.ndarray, low: float, high: float) -> np.ndarray:
    """Data values in the interpolation network's units: ``(value - low) / (high - low)``.

    The one formula of the grid's known rows (:func:`make_grid`, :class:`KnownRows`), so a
    row converted alone or within any block has the same bits.

    Parameters
    ----------
    rows : numpy.ndarray
        Data values (any dtype).
    low, high : float
        The intensity window mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray
        float32, shaped like ``rows``.
    """
    scale = 1.0 / (high - low)
    return (np.asarray(rows).astype(np.float32) - np.float32(low)) * np.float32(scale)


class KnownRows:
    """An output grid's volume that converts its known rows from the input when read.

    Behaves like the ``(n_out, Y, X)`` float32 array of :func:`make_grid` for the reads
    of inference (``grid[rows, ys, xs]`` with ``rows`` an index array, a slice or an
    integer, ``ys``/``xs`` slices or integers): the same values, bit for bit, without
    holding the grid (float32 is 4x a uint8 input, and a ``factor``-times grid has
    ``factor`` times its rows; issue 19). Rows that are not known read as 0.

    Parameters
    ----------
    slices : numpy.ndarray
        Input slices (any array that takes ``slices[index_array, ys, xs]``).
    targets : dict
        ``{input slice index: grid row}`` of the known rows.
    n_rows : int
        Rows of the grid.
    low, high : float
        The intensity window (network units 0 and 1).
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, slices, targets: dict, n_rows: int, low: float, high: float) -> None:
        self.slices = slices
        self.low, self.high = float(low), float(high)
        self.source = np.full(int(n_rows), -1, dtype=np.int64)
        for source, target in targets.items():
            self.source[int(target)] = int(source)
        self.shape = (int(n_rows), *np.shape(slices)[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "KnownRows converts the rows it is asked for; index it (grid[rows, ys, xs]) "
            "instead of building the whole grid"
        )

    def __getitem__(self, key) -> np.ndarray:
        rows, *rest = key if isinstance(key, tuple) else (key,)
        for part in (rows, *rest):
            if part is Ellipsis or part is None or np.asarray(part).dtype == bool:
                raise TypeError("KnownRows takes integer rows and slices or integers after them")
        if any(np.ndim(part) > 0 for part in rest):
            raise TypeError("KnownRows takes index arrays on its first axis only")
        single = np.ndim(rows) == 0 and not isinstance(rows, slice)
        if isinstance(rows, slice):
            rows = np.arange(self.shape[0])[rows]
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        sources = self.source[rows]
        wanted = np.unique(sources[sources >= 0])
        read = grid_units(self.slices[(wanted, *rest)], self.low, self.high)
        values = np.zeros((rows.size, *read.shape[1:]), np.float32)
        present = sources >= 0
        values[present] = read[np.searchsorted(wanted, sources[present])]
        return values[0] if single else values


def neighbours(known: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row: the nearest known row at or below, at or above, and the fraction t.

    Rows outside the first/last known row take the nearest known row on both sides.

    Returns
    -------
    tuple of numpy.ndarray
        ``(below, above, t)``; ``t`` is 0 on known rows.
    """
    known = np.asarray(known, dtype=bool)
    index = np.flatnonzero(known)
    if index.size == 0:
        raise ValueError("no known row")
    rows = np.arange(known.size)
    position = np.searchsorted(index, rows, side="right") - 1
    below = index[np.clip(position, 0, index.size - 1)]
    above_position = np.where(known, position, position + 1)
    above = index[np.clip(above_position, 0, index.size - 1)]
    span = above - below
    t = np.where(span > 0, (rows - below) / np.maximum(span, 1), 0.0)
    return below, above, t.astype(np.float32)


def linear_fill(rows: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown rows (axis 0) of ``rows`` by blending their known neighbours."""
    below, above, t = neighbours(known)
    shape = (-1,) + (1,) * (rows.ndim - 1)
    weight = t.reshape(shape)
    return ((1.0 - weight) * rows[below] + weight * rows[above]).astype(np.float32)


def bounded(known: np.ndarray) -> np.ndarray:
    """Unknown rows with a known row on both sides (the rows a gap fill synthesizes)."""
    known = np.asarray(known, dtype=bool)
    index = np.flatnonzero(known)
    rows = np.arange(known.size)
    if index.size < 2:
        return np.zeros(known.size, dtype=bool)
    return ~known & (rows > index[0]) & (rows < index[-1])


def gap_lengths(known: np.ndarray) -> set[int]:
    """Distances between consecutive known rows that enclose at least one unknown row."""
    index = np.flatnonzero(np.asarray(known, dtype=bool))
    steps = np.diff(index)
    return {int(s) for s in steps if s > 1}


def blank_gap(known: np.ndarray, row: int) -> int:
    """The gap length that blanking the known ``row`` would create."""
    index = np.flatnonzero(known)
    position = int(np.searchsorted(index, row))
    if position == 0 or position >= index.size - 1 or index[position] != row:
        return 0
    return int(index[position + 1] - index[position - 1])


def blankable_rows(known: np.ndarray, allowed: set[int]) -> np.ndarray:
    """Known rows whose blanking alone creates a gap of an ``allowed`` length."""
    return np.array(
        [r for r in np.flatnonzero(known) if blank_gap(known, int(r)) in allowed], dtype=int
    )


def gap_if_blanked(known: np.ndarray, rows) -> int:
    """The gap that blanking the known ``rows`` together creates (0 when it makes none).

    ``rows`` must be every known row between two known rows (a run of the known index):
    the gap is the distance between the known rows just outside it. 0 when a row is not
    known, the run leaves known rows inside it, or a side has no known row.
    """
    known = np.asarray(known, dtype=bool)
    rows = np.asarray(sorted(int(r) for r in rows), dtype=int)
    if rows.size == 0 or not known[rows].all():
        return 0
    index = np.flatnonzero(known)
    first = int(np.searchsorted(index, rows[0]))
    last = first + rows.size - 1
    if first == 0 or last >= index.size - 1 or not np.array_equal(index[first : last + 1], rows):
        return 0
    return int(index[last + 1] - index[first - 1])


def blank_groups(known: np.ndarray, allowed: set[int]) -> list[tuple[int, ...]]:
    """Runs of known rows whose blanking together creates a gap of an ``allowed`` length.

    A run is every known row strictly between two known rows ``i < j`` with ``j - i`` in
    ``allowed``: blanking it leaves the gap ``(i, j)``. Single rows (drop-every-G) and runs
    of ``k`` consecutive rows (a run of ``k`` missing slices in a dense volume: gap
    ``k + 1``) are both covered.
    """
    if not allowed:
        return []
    index = np.flatnonzero(np.asarray(known, dtype=bool))
    longest = max(allowed)
    groups = []
    for a in range(index.size):
        for b in range(a + 2, index.size):
            gap = int(index[b] - index[a])
            if gap > longest:
                break
            if gap in allowed:
                groups.append(tuple(int(r) for r in index[a + 1 : b]))
    return groups


@dataclass(frozen=True)
class TrainingGeometry:
    """The gaps to learn and which kept slices are held out to check the result.

    Attributes
    ----------
    target_gaps : set of int
        Gap lengths of the job (distance between the kept neighbours of a synthesized slice).
    blank_gaps : set of int
        Gap lengths that blanking kept slices creates in training: ``target_gaps``
        when some run of kept slices can be blanked to give one (``exact``), else the
        longer gap that blanking one kept slice gives most often (twice the gap when
        every G-th is kept).
    exact : bool
        Whether blanked kept slices reproduce the job's own gaps along z.
    validation_groups : tuple of tuple of int
        Runs of kept output rows held out of training together and scored before filling
        (each leaves one gap of a ``blank_gaps`` length).
    """

    target_gaps: set[int]
    blank_gaps: set[int]
    exact: bool
    validation_groups: tuple[tuple[int, ...], ...] = ()

    @property
    def validation_rows(self) -> tuple[int, ...]:
        """Every held-out kept output row, ascending."""
        return tuple(sorted(r for group in self.validation_groups for r in group))

    def describe(self) -> str:
        """One sentence for progress messages and provenance."""
        gaps = ", ".join(map(str, sorted(self.target_gaps)))
        if self.exact:
            return f"gap {gaps} (held-out kept slices rebuilt at the same gap)"
        longer = ", ".join(map(str, sorted(self.blank_gaps))) or "none"
        return (
            f"gap {gaps}; no kept slice can be rebuilt at that gap along z, so held-out kept "
            f"slices are rebuilt at gap {longer} (a harder proxy)"
        )


def training_geometry(known: np.ndarray, n_validation: int) -> TrainingGeometry:
    """Pick the blanking gaps and spread ``n_validation`` held-out kept runs evenly.

    At most a sixth of the blankable runs is held out when the gaps are exact (a third
    for the proxy), so training keeps most of the supervision.
    """
    known = np.asarray(known, dtype=bool)
    targets = gap_lengths(known)
    exact_groups = blank_groups(known, targets)
    exact = bool(exact_groups)
    if exact:
        blank = set(targets)
        candidates = exact_groups
    else:
        counts: dict[int, int] = {}
        for row in np.flatnonzero(known):
            gap = blank_gap(known, int(row))
            if gap:
                counts[gap] = counts.get(gap, 0) + 1
        longer = [g for g in counts if g > max(targets, default=0)] or list(counts)
        blank = {max(longer, key=lambda g: (counts[g], -g))} if longer else set()
        candidates = [(int(r),) for r in blankable_rows(known, blank)]
    count = min(int(n_validation), len(candidates) // 6 if exact else len(candidates) // 3)
    if n_validation > 0 and count == 0 and len(candidates) >= 2:
        count = 1
    chosen: list[tuple[int, ...]] = []
    if count > 0:
        positions = np.linspace(0, len(candidates) - 1, count + 2)[1:-1]
        current = known.copy()
        for position in positions:
            order = np.argsort(np.abs(np.arange(len(candidates)) - position), kind="stable")
            for i in order:
                group = candidates[int(i)]
                if group not in chosen and gap_if_blanked(current, group) in blank:
                    chosen.append(group)
                    current[list(group)] = False
                    break
    return TrainingGeometry(targets, blank, exact, tuple(sorted(chosen)))
