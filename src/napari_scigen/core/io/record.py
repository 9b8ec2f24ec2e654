"""The JSON record napari-scigen embeds in every file it writes (strict JSON: NaN
is stored as ``null``, infinities as ``"inf"``/``"-inf"``).

Every file written by :func:`write_volume` carries one JSON object::

    {"napari_scigen": {"format": 1, "kind": "image", "voxel_size": [z, y, x],
                       "unit": "um", "provenance": {...} or null}}

- ImageJ files: as the ImageJ ``Info`` property (IJMetadata tag 50839); Fiji
  shows it under *Image > Show Info* and keeps it when it re-saves the file;
- plain TIFF files: merged into tifffile's JSON ``ImageDescription`` next to
  ``"shape"``.

:func:`read_volume` looks in both places.
"""

from __future__ import annotations

import json
from typing import Any

import tifffile

from napari_scigen.core.provenance import strict_jsonable

#: Key of our JSON record in ImageJ ``Info`` or in the shaped JSON description.
METADATA_KEY = "napari_scigen"
#: Version of the JSON record layout.
METADATA_FORMAT = 1


def _record_json(
    kind: str,
    voxel_size: tuple[float, ...],
    unit: str,
    provenance: dict | None,
    stored_dtype_note: str | None,
) -> str:
    """The record to embed, as JSON text ``{"napari_scigen": {...}}`` with sorted keys."""
    record: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "kind": kind,
        "voxel_size": list(voxel_size),
        "unit": unit,
        "provenance": strict_jsonable(provenance) if provenance is not None else None,
    }
    if stored_dtype_note:
        record["stored_dtype_note"] = stored_dtype_note
    return json.dumps({METADATA_KEY: record}, sort_keys=True, allow_nan=False)


def _record_from_text(text: Any) -> dict | None:
    if isinstance(text, dict):
        record = text.get(METADATA_KEY)
        return record if isinstance(record, dict) else None
    if not isinstance(text, str) or METADATA_KEY not in text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return _record_from_text(parsed) if isinstance(parsed, dict) else None


def _find_record(tif: tifffile.TiffFile) -> dict | None:
    """Our JSON record from ImageJ ``Info`` or the shaped description, if present."""
    imagej = tif.imagej_metadata or {}
    record = _record_from_text(imagej.get("Info"))
    if record is None:
        for shaped in tif.shaped_metadata or ():
            record = _record_from_text(shaped)
            if record is not None:
                break
    return record


def _record_kind(record: dict | None) -> str:
    kind = (record or {}).get("kind", "image")
    return kind if kind in ("image", "labels") else "image"


def _record_notes(record: dict | None) -> list[str]:
    note = (record or {}).get("stored_dtype_note")
    return [f"written by napari-scigen: {note}"] if note else []
