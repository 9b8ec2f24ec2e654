"""Form parts several dock widgets share: the slice-selection field, the shown slice.

The slice grammar itself lives in :mod:`napari_scigen.core.indices` (the CLI uses the
same one); this module only adds what needs the viewer: which slice is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import LineEdit

from ..core.indices import SLICES_HELP, parse_slice_selection

if TYPE_CHECKING:
    import napari


def current_slice(viewer: napari.viewer.Viewer, layer) -> int:
    """Data index of the slice of a 3D ``layer`` shown in ``viewer`` (0 for 2D layers)."""
    if layer.ndim < 3:
        return 0
    z = int(round(float(layer.world_to_data(viewer.dims.point)[-3])))
    return int(np.clip(z, 0, layer.data.shape[-3] - 1))


def slices_field(value: str = "current", label: str = "slices") -> LineEdit:
    """A text field for a slice selection (see :data:`~napari_scigen.core.indices.SLICES_HELP`)."""
    return LineEdit(value=value, label=label, tooltip=SLICES_HELP)


def read_slices(field: LineEdit, viewer: napari.viewer.Viewer, layer) -> tuple[int, ...] | None:
    """The slices selected in ``field`` for ``layer`` (``None`` = every slice).

    Raises
    ------
    InvalidInputError
        For unreadable text or indices outside the layer (a ``ValueError``).
    """
    depth = layer.data.shape[-3] if layer.ndim >= 3 else 1
    return parse_slice_selection(field.value, depth, current=current_slice(viewer, layer))
