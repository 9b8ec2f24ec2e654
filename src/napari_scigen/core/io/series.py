"""Which image series of a TIFF file is the volume, and sanity checks on what it declares.

A TIFF may hold several image series: ``tifffile.imwrite(..., append=True)`` adds one
per call, and pages of different shapes form separate series. When every series is a
stack of 2D grayscale pages of one shape and dtype, all pages are read as one stack
(in file order); otherwise the file is refused with a list of its series, unless one
is chosen (``read_volume(..., series=N)``, CLI ``--series N``).

A header can also declare far more data than the file can hold: deflate expands at
most ~1032:1, so a page whose declared size exceeds that ratio of its compressed bytes
is damaged (or a decompression bomb) and is refused before anything is allocated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import _broken_file_error
from .lazy import _series_length, _series_page
from .memory import format_bytes

#: TIFF compression codes of deflate/zlib data.
_DEFLATE_CODES = (8, 32946)
#: The largest expansion of a deflate stream (zlib's theoretical limit is 1032:1).
_DEFLATE_MAX_RATIO = 1032
#: Slack for headers and tiny strips.
_DEFLATE_SLACK_BYTES = 64 * 1024


def _describe_series(series) -> str:
    return f"{tuple(series.shape)} {np.dtype(series.dtype)} (axes {series.axes})"


def _pages(series) -> list:
    return [_series_page(series, i) for i in range(_series_length(series))]


def _stackable(all_series) -> bool:
    """Whether every series is a stack of 2D grayscale pages of one shape and dtype."""
    first = all_series[0].keyframe
    for series in all_series:
        key = series.keyframe
        if len(key.shape) != 2 or key.shape != first.shape or key.dtype != first.dtype:
            return False
        if any(page is None for page in _pages(series)):
            return False
    return True


def select_series(tif: tifffile.TiffFile, path: Path, series: int | None) -> tuple[Any, str | None]:
    """The series to read as the volume, and a note when several were combined.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file.
    path : Path
        For messages.
    series : int, optional
        Index of the series to read; ``None`` reads the only one, or all pages as one
        stack when every series is made of pages of one 2D shape and dtype.

    Raises
    ------
    InvalidInputError
        No image data, a series index out of range, or several series that cannot
        be stacked (the message lists them and how to choose one).
    """
    found = list(tif.series)
    if not found:
        raise _broken_file_error(path, "no image data found")
    if series is not None:
        if not 0 <= int(series) < len(found):
            raise _broken_file_error(
                path,
                f"has {len(found)} image series (0..{len(found) - 1}); there is no series {series}",
            )
        return found[int(series)], None
    if len(found) == 1:
        return found[0], None
    if _stackable(found):
        pages = [page for one in found for page in _pages(one)]
        key = found[0].keyframe
        combined = tifffile.TiffPageSeries(
            pages, shape=(len(pages), *key.shape), dtype=key.dtype, axes="IYX", parent=tif
        )
        note = (
            f"{len(found)} image series of {key.shape} {np.dtype(key.dtype)} pages read as one "
            f"stack of {len(pages)} slices (choose one with --series N)"
        )
        return combined, note
    listed = "; ".join(f"series {i}: {_describe_series(s)}" for i, s in enumerate(found))
    raise _broken_file_error(
        path,
        f"holds {len(found)} image series of different shapes or dtypes ({listed}); choose one "
        "with --series N (read_volume(..., series=N))",
    )


def check_declared_sizes(path: Path, series) -> None:
    """Refuse deflate pages that declare more pixels than their compressed bytes can hold.

    Raises
    ------
    InvalidInputError
        Naming the page, its declared size and its compressed size.
    """
    for index in range(_series_length(series)):
        page = _series_page(series, index)
        if page is None:
            continue
        key = getattr(page, "keyframe", None) or page
        if int(key.compression) not in _DEFLATE_CODES:
            return  # all pages of a series share the keyframe's compression
        compressed = int(sum(int(n) for n in page.databytecounts))
        declared = int(key.nbytes)
        if declared > compressed * _DEFLATE_MAX_RATIO + _DEFLATE_SLACK_BYTES:
            raise _broken_file_error(
                path,
                f"page {index} declares {tuple(key.shape)} {np.dtype(key.dtype)} pixels "
                f"({format_bytes(declared)}) from only {compressed:,} bytes of deflate data, "
                "more than deflate can expand to: the file is damaged (or a decompression "
                "bomb) and was not read",
            )
