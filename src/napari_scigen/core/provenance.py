"""Provenance records attached to every generated layer and file.

Records are written as strict JSON (:func:`provenance_json`, the record embedded in
TIFF files): a non-finite float becomes ``null`` (NaN) or the string ``"inf"`` /
``"-inf"``, never the bare ``NaN``/``Infinity`` that JSON parsers refuse.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

#: Packages whose versions are recorded when installed (looked up without importing them).
RECORDED_PACKAGES = (
    "napari-scigen",
    "numpy",
    "scipy",
    "scikit-image",
    "tifffile",
    "torch",
    "diffusers",
    "transformers",
    "lpips",
    "napari",
)


def software_versions(packages: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Versions of the installed packages that can influence a result.

    Parameters
    ----------
    packages : tuple of str
        Distribution names to look up; missing ones are skipped.

    Returns
    -------
    dict
        ``{"python": ..., "<package>": "<version>", ...}``.
    """
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, NumPy scalars/arrays and tuples to JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return (
            value.tolist()
            if value.size <= 64
            else f"<array shape={value.shape} dtype={value.dtype}>"
        )
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def strict_jsonable(value: Any) -> Any:
    """:func:`to_jsonable`, with NaN as ``None`` and infinities as ``"inf"``/``"-inf"``.

    The result passes ``json.dumps(..., allow_nan=False)``.
    """

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None if math.isnan(item) else ("inf" if item > 0 else "-inf")
        if isinstance(item, dict):
            return {key: clean(v) for key, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    return clean(to_jsonable(value))


def make_provenance(
    engine: str,
    params: Any = None,
    *,
    model: str | None = None,
    seed: int | list[int] | None = None,
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the provenance record for one engine run.

    Parameters
    ----------
    engine : str
        Engine name, e.g. ``"inpaint-biharmonic"`` or ``"diffedit"``.
    params : dataclass or dict, optional
        The parameters the engine ran with.
    model : str, optional
        Model hub id or local path.
    seed : int or list of int, optional
        Random seed(s) used (per slice where relevant).
    source : dict, optional
        Description of the input (shape, dtype, layer name, file).
    extra : dict, optional
        Anything else worth recording (e.g. intensity windows).

    Returns
    -------
    dict
        A JSON-serialisable dictionary.
    """
    record: dict[str, Any] = {
        "engine": engine,
        "params": to_jsonable(params) if params is not None else {},
        "model": model,
        "seed": to_jsonable(seed),
        "source": to_jsonable(source or {}),
        "software": software_versions(),
        "platform": platform.platform(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record["extra"] = to_jsonable(extra)
    return record


def provenance_json(record: dict[str, Any]) -> str:
    """Serialise a provenance record to a compact, stable, strict JSON string.

    NaN becomes ``null`` and infinities ``"inf"``/``"-inf"`` (see :func:`strict_jsonable`).
    """
    return json.dumps(strict_jsonable(record), sort_keys=True, allow_nan=False)
