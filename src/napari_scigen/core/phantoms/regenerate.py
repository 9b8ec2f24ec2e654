"""Rebuild a phantom from the ``parameters`` it recorded (e.g. read back from provenance)."""

from __future__ import annotations

from typing import Any

from napari_scigen.core.validation import InvalidInputError

from .common import _FORMAT_VERSION, Phantom
from .fibre import make_fibre_volume
from .rock import make_rock_volume


def phantom_from_parameters(parameters: dict[str, Any]) -> Phantom:
    """Regenerate a phantom from its ``parameters`` (e.g. read back from provenance).

    Parameters
    ----------
    parameters : dict
        ``Phantom.parameters`` of an earlier call (``"derived"`` is ignored).

    Returns
    -------
    Phantom
        Byte-identical to the original on the same software versions.
    """
    generators = {"make_rock_volume": make_rock_volume, "make_fibre_volume": make_fibre_volume}
    kwargs = {
        k: v for k, v in parameters.items() if k not in ("generator", "format_version", "derived")
    }
    name = parameters.get("generator")
    if name not in generators:
        raise InvalidInputError(
            f"unknown phantom generator {name!r}; expected one of {sorted(generators)}"
        )
    if parameters.get("format_version", _FORMAT_VERSION) != _FORMAT_VERSION:
        raise InvalidInputError(
            f"phantom parameters have format_version {parameters.get('format_version')}, "
            f"this version builds format {_FORMAT_VERSION}; results would differ"
        )
    kwargs["shape"] = tuple(kwargs["shape"])
    for key in ("grain_radius_range",):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return generators[name](**kwargs)
