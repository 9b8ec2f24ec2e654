"""Which image series of a TIFF file is the volume, and sanity checks on what it declares.

A TIFF may hold several image series: ``tifffile.imwrite(..., append=True)`` adds one
per call, and pages of different shapes form separate series. When every series is a
stack of 2D grayscale pages of one shape and dtype, all pages are read as one stack
(in file order); otherwise the file is refused with a list of its series, unless one
is chosen (``read_volume(..., series=N)``; each front-end names the option its own way).

A header can also declare far more data than the file can hold. Each lossless codec
has a largest expansion its format allows (deflate ~1032:1, LZW with 12-bit codes
~1300:1, PackBits 64:1, zstd 32768:1 from 4-byte RLE blocks of 128 KiB, LZMA ~7500:1
from its range coder's cheapest match): a page whose declared size exceeds its codec's
ratio of its compressed bytes is damaged (or a decompression bomb) and is refused before
anything is allocated. Codecs without such a bound (LERC, JPEG 2000, JPEG XL, ...) can
store a constant image in a few bytes; their pages are checked against memory only
(:func:`~napari_scigen.core.io.memory.check_fits_in_memory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .errors import _broken_file_error
from .lazy import _series_length, _series_page
from .memory import format_bytes

#: TIFF compression code -> (codec name, the most its format expands, with a margin).
#: deflate: zlib's theoretical limit 1032:1 (also inside PNG); LZW: 1335:1 measured on
#: zeros (12-bit codes; the format's bound is close to that); PackBits: 2 bytes -> 128;
#: zstd: a 3-byte block header + 1 byte repeated into a 128 KiB block; LZMA: ~0.3 bit
#: per 273-byte match at the range coder's cheapest probability (~7500:1).
_MAX_RATIO = {
    8: ("deflate", 1032),
    32946: ("deflate", 1032),
    34933: ("PNG (deflate)", 1032),
    5: ("LZW", 2048),
    32773: ("PackBits", 64),
    50000: ("zstd", 32768),
    34926: ("zstd", 32768),
    34925: ("LZMA", 16384),
}
#: Slack for headers and tiny strips.
_SLACK_BYTES = 64 * 1024


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
            f"stack of {len(pages)} slices (one series can be chosen instead)"
        )
        return combined, note
    listed = "; ".join(f"series {i}: {_describe_series(s)}" for i, s in enumerate(found))
    raise _broken_file_error(
        path,
        f"holds {len(found)} image series of different shapes or dtypes ({listed}); choose one "
        "with series=N",
        options=["series"],
    )


def check_declared_sizes(path: Path, series) -> None:
    """Refuse compressed pages that declare more pixels than their bytes can hold.

    Every page of the series is compared with the largest expansion of its codec
    (:data:`_MAX_RATIO`: deflate, PNG, LZW, PackBits, zstd, LZMA); other codecs have no
    such bound and are left to the memory checks.

    Raises
    ------
    InvalidInputError
        Naming the page, its declared size, its compressed size and the codec.
    """
    for index in range(_series_length(series)):
        page = _series_page(series, index)
        if page is None:
            continue
        key = getattr(page, "keyframe", None) or page
        codec = _MAX_RATIO.get(int(key.compression))
        if codec is None:
            return  # all pages of a series share the keyframe's compression
        name, ratio = codec
        compressed = int(sum(int(n) for n in page.databytecounts))
        declared = int(key.nbytes)
        if declared > compressed * ratio + _SLACK_BYTES:
            raise _broken_file_error(
                path,
                f"page {index} declares {tuple(key.shape)} {np.dtype(key.dtype)} pixels "
                f"({format_bytes(declared)}) from only {compressed:,} bytes of {name} data, "
                f"more than {name} can expand to (at most {ratio}:1): the file is damaged (or "
                "a decompression bomb) and was not read",
            )
