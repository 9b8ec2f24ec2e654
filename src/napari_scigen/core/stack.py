"""Intensity windowing between microCT data (8/16-bit, int16, float32) and model range.

Generative models expect values in ``[0, 1]`` (or ``[-1, 1]``). A :class:`Window`
maps data to ``[0, 1]`` (clipping outside the window), remembers how, and maps
model output back to the original dtype and range. The window is recorded in
provenance so a result can be reproduced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A linear intensity window ``[low, high]`` on the data's own scale.

    Parameters
    ----------
    low, high : float
        Data values mapped to 0 and 1.
    dtype : str
        NumPy dtype name of the original data.
    method : str
        How the window was chosen (``"percentile 0.5-99.5"``, ``"dtype"``, ``"given"``).
    """

    low: float
    high: float
    dtype: str
    method: str = "given"

    def to_unit(self, data: np.ndarray) -> np.ndarray:
        """Map data to float32 in ``[0, 1]`` (values outside the window are clipped)."""
        span = self.high - self.low
        scaled = (np.asarray(data, dtype=np.float64) - self.low) / (span if span > 0 else 1.0)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Map ``[0, 1]`` values back to the original dtype (rounded and clipped for integers)."""
        values = (
            np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0) * (self.high - self.low)
            + self.low
        )
        target = np.dtype(self.dtype)
        if np.issubdtype(target, np.integer):
            info = np.iinfo(target)
            return np.clip(np.rint(values), info.min, info.max).astype(target)
        return values.astype(target)

    def as_dict(self) -> dict:
        """JSON-friendly description for provenance."""
        return asdict(self)


def dtype_window(dtype) -> Window:
    """The full range of an integer dtype (``uint8`` -> 0..255); floats are not allowed."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"dtype window needs an integer dtype, got {dtype}; use percentile_window")
    info = np.iinfo(dtype)
    return Window(float(info.min), float(info.max), dtype.name, "dtype")


def percentile_window(
    data: np.ndarray, low: float = 0.5, high: float = 99.5, *, sample: int = 2_000_000
) -> Window:
    """A window between two percentiles of ``data`` (robust to hot/dead pixels).

    Parameters
    ----------
    data : numpy.ndarray
        Slice or volume on its own scale.
    low, high : float
        Percentiles in ``[0, 100]``.
    sample : int
        At most this many values are used (a strided subsample of large volumes).

    Returns
    -------
    Window
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    flat = np.asarray(data).ravel()
    if flat.size > sample:
        flat = flat[:: int(np.ceil(flat.size / sample))]
    lo, hi = np.percentile(flat, [low, high])
    if hi <= lo:  # constant image: widen so the mapping stays invertible
        hi = lo + 1.0
    return Window(float(lo), float(hi), np.asarray(data).dtype.name, f"percentile {low}-{high}")


def data_range_for(data: np.ndarray) -> float:
    """The ``data_range`` to use for SSIM/PSNR: dtype span for integers, max-min for floats."""
    array = np.asarray(data)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return float(info.max - info.min)
    span = float(np.max(array) - np.min(array))
    return span if span > 0 else 1.0


def cast_to_range(values: np.ndarray, dtype, low: float, high: float) -> np.ndarray:
    """Clip float values to ``[low, high]``, round for integer dtypes, cast to ``dtype``.

    How every engine brings synthesized values back to the input's dtype without
    leaving the input's own value range.
    """
    clipped = np.clip(values, low, high)
    if np.issubdtype(np.dtype(dtype), np.integer):
        clipped = np.rint(clipped)
    return clipped.astype(dtype)
