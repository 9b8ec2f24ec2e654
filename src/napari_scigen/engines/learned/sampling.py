"""Training crops for the learned slice interpolation, drawn from the volume itself.

Two sources, both at the job's own gap geometry:

* **through-plane**: a crop of an xz or yz plane of the output grid (rows = z). Kept
  rows are blanked where that creates a gap of the job's length (e.g. with every 4th
  slice missing, a kept slice between two kept ones); the blanked rows are the targets.
  When no kept slice can be blanked to the job's gap (only every G-th slice kept),
  blanking gives longer gaps (twice as long then): a coarser, approximate supervision.
* **in-plane**: a crop of a kept xy slice (rows along y, or along x), with a window of
  the job's own known/unknown row pattern applied to its rows; the dropped rows are the
  targets. This is exact for isotropic voxels (SMORE, Zhao et al. 2021): the structure
  across rows of an xy slice is then statistically the structure along z. With a voxel
  size given, the slices are resampled so that their row spacing is the output's z
  spacing. Thin slices (a point sample of the structure at each z) are the default;
  with a slice thickness the in-plane rows are first blurred with that profile
  (:func:`slice_profile_blur`), as ECLARE models thick slices.

Each crop becomes the network input ``[linear fill of its rows, known-row mask]``, the
target (the real crop) and a weight that is 1 on the target rows only. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import blank_groups, bounded, gap_if_blanked, linear_fill

#: Largest number of kept xy slices kept in memory as in-plane sources.
MAX_IN_PLANE_SOURCES = 64


@dataclass
class Batch:
    """One training batch (float32 arrays).

    Attributes
    ----------
    inputs : numpy.ndarray
        ``(B, 2, R, C)``: linear fill, known-row mask.
    target : numpy.ndarray
        ``(B, 1, R, C)``.
    weight : numpy.ndarray
        ``(B, 1, R, C)``: 1 where the loss counts.
    real : numpy.ndarray or None
        ``(B, 1, C, C)`` real crops for an adversarial term (in-plane truth).
    """

    inputs: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    real: np.ndarray | None = None


def _resample_rows(image: np.ndarray, zoom: float) -> np.ndarray:
    """Resample the rows of ``image`` by ``zoom`` (antialiased when shrinking)."""
    if abs(zoom - 1.0) < 0.01:
        return image
    from scipy import ndimage

    if zoom < 1.0:
        image = ndimage.gaussian_filter1d(image, sigma=0.4 / zoom, axis=0, mode="reflect")
    return ndimage.zoom(image, (zoom, 1.0), order=1, mode="reflect").astype(np.float32)


def slice_profile_blur(image: np.ndarray, thickness: float | None) -> np.ndarray:
    """Blur the rows of ``image`` with a slice profile of ``thickness`` pixels (FWHM).

    A Gaussian profile whose full width at half maximum is the slice thickness, in the
    units of the rows (output z spacing). ``None`` or 0: thin slices, unchanged.
    """
    if not thickness:
        return image
    from scipy import ndimage

    sigma = float(thickness) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return ndimage.gaussian_filter1d(image, sigma=sigma, axis=0, mode="reflect").astype(np.float32)


def in_plane_images(
    plane: np.ndarray, zoom_y: float, zoom_x: float, thickness: float | None = None
) -> list[np.ndarray]:
    """One kept xy slice as two in-plane images: rows along y, and rows along x.

    Each is resampled so that its row spacing is the output's z spacing, then blurred with
    the slice profile (:func:`slice_profile_blur`).
    """
    return [
        slice_profile_blur(_resample_rows(plane, zoom_y), thickness),
        slice_profile_blur(_resample_rows(np.ascontiguousarray(plane.T), zoom_x), thickness),
    ]


def in_plane_sources(
    volume: np.ndarray,
    rows: np.ndarray,
    zoom_y: float,
    zoom_x: float,
    thickness: float | None = None,
) -> list[np.ndarray]:
    """The kept xy slices used as in-plane sources, in both row orientations.

    Parameters
    ----------
    volume : numpy.ndarray
        Output grid ``(n_out, Y, X)`` in network units.
    rows : numpy.ndarray
        Output rows that hold real (kept, not held-out) slices.
    zoom_y, zoom_x : float
        ``pixel size / output z spacing`` along y and x: how the in-plane rows are
        resampled so that their spacing is the output's z spacing.
    thickness : float, optional
        Slice thickness in output z spacings (FWHM of a Gaussian profile); none: thin.
    """
    chosen = np.asarray(rows)
    if chosen.size > MAX_IN_PLANE_SOURCES:
        chosen = chosen[np.linspace(0, chosen.size - 1, MAX_IN_PLANE_SOURCES).round().astype(int)]
    sources = []
    for row in chosen:
        sources += in_plane_images(volume[int(row)], zoom_y, zoom_x, thickness)
    return sources


class InterpolationSampler:
    """Random training crops at the job's gap geometry (see the module docstring).

    Parameters
    ----------
    volume : numpy.ndarray
        Output grid ``(n_out, Y, X)`` in network units (unknown rows are ignored).
    known : numpy.ndarray
        Rows that hold real slices in training (kept rows minus held-out ones).
    blank_gaps : set of int
        Gap lengths blanking may create in through-plane crops.
    sources : list of numpy.ndarray
        In-plane sources from :func:`in_plane_sources`.
    in_plane_fraction : float
        Share of in-plane crops.
    crop : tuple of int
        ``(rows, columns)`` of every crop.
    orientations : tuple of str
        Through-plane orientations to draw from (``"xz"``: fixed y, ``"yz"``: fixed x).
    rng : numpy.random.Generator
        The only source of randomness (its state is what a checkpoint saves).
    protected : collection of int, optional
        Output rows never blanked as targets (kept slices held out for the in-plane check).
    """

    def __init__(
        self,
        volume: np.ndarray,
        known: np.ndarray,
        blank_gaps: set[int],
        sources: list[np.ndarray],
        in_plane_fraction: float,
        crop: tuple[int, int],
        orientations: tuple[str, ...],
        rng: np.random.Generator,
        protected=(),
    ) -> None:
        self.volume = volume
        self.known = np.asarray(known, dtype=bool)
        self.protected = np.zeros(self.known.size, dtype=bool)
        self.protected[list(protected)] = True
        self.blank_gaps = set(blank_gaps)
        self.sources = [s for s in sources if s.shape[0] >= crop[0] and s.shape[1] >= crop[1]]
        self.crop = crop
        self.orientations = orientations
        self.rng = rng
        self.windows = self._pattern_windows()
        self.in_plane_ok = bool(self.sources) and self.windows.size > 0
        occurring = {
            gap_if_blanked(self.known, group)
            for group in blank_groups(self.known, self.blank_gaps)
            if not self.protected[list(group)].any()
        }
        self.through_plane_ok = any(g + 1 <= crop[0] for g in occurring)
        if not (self.in_plane_ok or self.through_plane_ok):
            raise ValueError(
                "no training crop can be made from this volume at this gap (too few kept "
                "slices, or slices smaller than the crop)"
            )
        self.in_plane_fraction = (
            1.0 if not self.through_plane_ok else in_plane_fraction if self.in_plane_ok else 0.0
        )

    def _pattern_windows(self) -> np.ndarray:
        """Row offsets whose window of the known pattern has a bounded unknown row."""
        rows = self.crop[0]
        starts = [
            s
            for s in range(0, self.known.size - rows + 1)
            if bounded(self.known[s : s + rows]).any()
        ]
        return np.array(starts, dtype=int)

    def _through_plane(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        rows, columns = self.crop
        depth, height, width = self.volume.shape
        orientation = self.orientations[int(self.rng.integers(len(self.orientations)))]
        start = int(self.rng.integers(0, depth - rows + 1))
        if orientation == "xz":
            left = int(self.rng.integers(0, width - columns + 1))
            image = self.volume[start : start + rows, int(self.rng.integers(height))]
            image = image[:, left : left + columns]
        else:
            left = int(self.rng.integers(0, height - columns + 1))
            image = self.volume[start : start + rows, left : left + columns]
            image = image[:, :, int(self.rng.integers(width))]
        known = self.known[start : start + rows].copy()
        protected = self.protected[start : start + rows]
        targets = np.zeros(rows, dtype=bool)
        groups = [g for g in blank_groups(known, self.blank_gaps) if not protected[list(g)].any()]
        for i in self.rng.permutation(len(groups)):
            group = list(groups[int(i)])
            if self.rng.random() < 0.5 and gap_if_blanked(known, group) in self.blank_gaps:
                known[group] = False
                targets[group] = True
        if not targets.any():
            return None
        return np.ascontiguousarray(image), known, targets

    def _in_plane(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, columns = self.crop
        source = self.sources[int(self.rng.integers(len(self.sources)))]
        top = int(self.rng.integers(0, source.shape[0] - rows + 1))
        left = int(self.rng.integers(0, source.shape[1] - columns + 1))
        image = source[top : top + rows, left : left + columns]
        start = int(self.windows[int(self.rng.integers(self.windows.size))])
        known = self.known[start : start + rows].copy()
        return image, known, bounded(known)

    def sample(self, batch: int, *, with_real: bool = False) -> Batch:
        """Draw ``batch`` crops (flipped at random along rows and columns)."""
        rows, columns = self.crop
        inputs = np.empty((batch, 2, rows, columns), np.float32)
        target = np.empty((batch, 1, rows, columns), np.float32)
        weight = np.empty((batch, 1, rows, columns), np.float32)
        for i in range(batch):
            drawn = None
            if self.rng.random() >= self.in_plane_fraction:
                drawn = self._through_plane()
            if drawn is None:
                drawn = self._in_plane() if self.in_plane_ok else self._retry_through_plane()
            image, known, targets = drawn
            if self.rng.random() < 0.5:
                image, known, targets = image[::-1], known[::-1], targets[::-1]
            if self.rng.random() < 0.5:
                image = image[:, ::-1]
            inputs[i, 0] = linear_fill(np.ascontiguousarray(image), known)
            inputs[i, 1] = known[:, None]
            target[i, 0] = image
            weight[i, 0] = targets[:, None]
        real = self.real_crops(batch) if with_real else None
        return Batch(inputs, target, weight, real)

    def _retry_through_plane(self):
        for _ in range(100):
            drawn = self._through_plane()
            if drawn is not None:
                return drawn
        raise ValueError("no training crop can be made from this volume at this gap")

    def real_crops(self, batch: int) -> np.ndarray:
        """Square real crops from the in-plane sources (for the discriminator)."""
        side = min(self.crop)
        crops = np.empty((batch, 1, side, side), np.float32)
        pool = [s for s in self.sources if min(s.shape) >= side] or [self.volume[self.known][0]]
        for i in range(batch):
            source = pool[int(self.rng.integers(len(pool)))]
            top = int(self.rng.integers(0, source.shape[0] - side + 1))
            left = int(self.rng.integers(0, source.shape[1] - side + 1))
            crops[i, 0] = source[top : top + side, left : left + side]
        return crops
