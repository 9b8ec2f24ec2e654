"""The :class:`Volume` returned by the reader, and the dtypes a volume file may hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_scigen.core.validation import SUPPORTED_DTYPES

#: dtypes read and written as they are (uint8, uint16, int16, float32).
_SUPPORTED = tuple(np.dtype(d) for d in SUPPORTED_DTYPES)
#: dtypes accepted only for label files (written by the writer for large label values).
_LABEL_ONLY_DTYPES = (np.dtype(np.uint32), np.dtype(np.int32))


@dataclass
class Volume:
    """A volume (or slice) read from disk, with its calibration.

    Parameters
    ----------
    data : numpy.ndarray, numpy.memmap or dask.array.Array
        Voxels, ``(Z, Y, X)`` or ``(Y, X)``; ``(C, Z, Y, X)`` when the file has a
        channel axis (then ``metadata["channel_axis"] == 0``). A memmap or dask
        array when ``lazy``.
    voxel_size : tuple of float
        Size of a voxel along each axis of ``data`` (1.0 for a channel axis).
    unit : str
        Unit of ``voxel_size``: ``"um"`` when the file's unit is a known length,
        ``"pixel"`` when uncalibrated, otherwise the file's own unit string.
    provenance : dict or None
        The provenance record stored by :func:`write_volume`, if any.
    kind : str
        ``"image"`` or ``"labels"`` (from our record; ``"image"`` otherwise).
    source : str
        The file or folder read.
    lazy : bool
        Whether ``data`` reads slices on demand.
    metadata : dict
        Raw extras: ``axes`` of ``data``, ``source_axes``, ``storage``
        (``"memory"``, ``"memmap"`` or ``"dask"``), ``imagej`` metadata,
        ``channel_axis``, ``voxel_size_z_assumed``, ``notes`` ...
    """

    data: Any
    voxel_size: tuple[float, ...]
    unit: str = "pixel"
    provenance: dict | None = None
    kind: str = "image"
    source: str = ""
    lazy: bool = False
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`."""
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of :attr:`data`."""
        return np.dtype(self.data.dtype)

    @property
    def channel_axis(self) -> int | None:
        """Index of the channel axis of :attr:`data`, or None."""
        return self.metadata.get("channel_axis")
