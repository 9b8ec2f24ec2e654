"""Read and write microCT volumes as TIFF, keeping voxel size and provenance.

One job per module:

- :mod:`~napari_scigen.core.io.read`: :func:`read_volume` (multi-page TIFFs,
  ImageJ hyperstacks, folders or lists of slice files; lazy above a size);
- :mod:`~napari_scigen.core.io.write`: :func:`write_volume` (atomic, ImageJ
  hyperstack or plain TIFF, lazy input written slab by slab);
- :mod:`~napari_scigen.core.io.calibration`: voxel size and units from TIFF
  tags and ImageJ metadata;
- :mod:`~napari_scigen.core.io.record`: the JSON record (kind, voxel size,
  unit, provenance) embedded in every file written here;
- :mod:`~napari_scigen.core.io.lazy`: array-likes that read only the pages or
  slice files an index touches;
- :mod:`~napari_scigen.core.io.axes`: tifffile series axes to ``[C,] [Z,] Y, X``;
- :mod:`~napari_scigen.core.io.files`: TIFF file names and slice folders;
- :mod:`~napari_scigen.core.io.volume`: the :class:`Volume` the reader returns;
- :mod:`~napari_scigen.core.io.errors`: tifffile failures as clear
  :class:`~napari_scigen.core.validation.InvalidInputError` messages;
- :mod:`~napari_scigen.core.io.series`: which image series of a file is read, and
  sizes a header cannot honestly declare;
- :mod:`~napari_scigen.core.io.memory`: refusing allocations that cannot fit;
- :mod:`~napari_scigen.core.io.zarr_read` and :mod:`~napari_scigen.core.io.zarr_write`:
  OME-Zarr volumes (``.zarr``/``.ome.zarr``; ``read_volume``/``write_volume`` dispatch
  there), with the store layout in :mod:`~napari_scigen.core.io.zarr_store` and the NGFF
  metadata in :mod:`~napari_scigen.core.io.ngff`.

Each module's docstring describes its rules (axes, dtypes, calibration, where
the record lives, how writes stay atomic).
"""

from __future__ import annotations

from .axes import MAX_CHANNELS_WITHOUT_SLICES
from .calibration import MICROMETRES_PER_UNIT as MICROMETRES_PER_UNIT
from .calibration import check_unit
from .files import TIFF_SUFFIXES, list_tiff_slices, natural_sort_key
from .files import is_tiff_path as is_tiff_path
from .memory import NotEnoughMemoryError, available_memory_bytes, check_fits_in_memory
from .read import DEFAULT_LAZY_THRESHOLD_BYTES, read_volume
from .record import METADATA_FORMAT as METADATA_FORMAT
from .record import METADATA_KEY
from .volume import Volume
from .write import write_volume
from .zarr_read import open_zarr_levels, read_zarr
from .zarr_store import is_zarr_path
from .zarr_write import write_zarr

__all__ = [
    "DEFAULT_LAZY_THRESHOLD_BYTES",
    "MAX_CHANNELS_WITHOUT_SLICES",
    "METADATA_KEY",
    "NotEnoughMemoryError",
    "TIFF_SUFFIXES",
    "Volume",
    "available_memory_bytes",
    "check_fits_in_memory",
    "check_unit",
    "list_tiff_slices",
    "natural_sort_key",
    "read_volume",
    "write_volume",
    "is_zarr_path",
    "open_zarr_levels",
    "read_zarr",
    "write_zarr",
]

#: Bytes of lazy (dask, memmap) input the writer computes at a time; read by
#: :mod:`~napari_scigen.core.io.write` at call time, so it can be set here.
_SLAB_BYTES = 256 * 1024**2
