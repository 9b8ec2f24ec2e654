"""TIFF file names and folders of slice files: which paths are TIFF, in which order."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: File name endings treated as TIFF (compared case-insensitively).
TIFF_SUFFIXES = (".tif", ".tiff")


def natural_sort_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``s2`` before ``s10``).

    Parameters
    ----------
    name : str
        File name.

    Returns
    -------
    list
        Alternating lower-case text and integer parts.
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_tiff_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a TIFF file name ending (no file access)."""
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def list_tiff_slices(folder: str | os.PathLike) -> list[Path]:
    """TIFF files directly inside ``folder``, in natural sort order.

    Hidden files (name starting with ``.``, e.g. macOS ``._*`` files or our
    own temporary files) and sub-folders are skipped.

    Parameters
    ----------
    folder : str or path-like
        Folder to list.

    Returns
    -------
    list of pathlib.Path
        The slice files (empty when there are none).
    """
    files = [
        entry
        for entry in Path(folder).iterdir()
        if entry.is_file() and is_tiff_path(entry) and not entry.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_sort_key(p.name))
