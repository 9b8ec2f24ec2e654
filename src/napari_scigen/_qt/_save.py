"""*File ▸ IO Utilities ▸ Save selected layer as napari-scigen microCT TIFF…*: one menu
entry that always writes with the plugin's writer (voxel size and provenance kept).

napari's own *File ▸ Save Selected Layer(s)…* lists every writer for the layer type and
preselects the first one registered, *napari builtins*, which writes neither the voxel
size nor the provenance; napari offers plugins no way to change that default or to step
in when a writer is chosen. This command is the direct route; in napari's dialog, choose
*napari-scigen microCT TIFF (voxel size + provenance)* as the file type.
"""

from __future__ import annotations

from pathlib import Path

import napari

from .._napari._writer import write_image, write_labels

#: The file dialog's filter.
TIFF_FILTER = "napari-scigen microCT TIFF (voxel size + provenance) (*.tif *.tiff)"


def has_provenance(layer) -> bool:
    """Whether ``layer`` carries napari-scigen provenance (a result, a read scan, a sample)."""
    return bool((layer.metadata or {}).get("provenance"))


def layer_attributes(layer) -> dict:
    """The layer attributes napari hands an npe2 single-layer writer."""
    return {
        "name": layer.name,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "units": tuple(str(unit) for unit in layer.units),
        "metadata": dict(layer.metadata),
        "rgb": bool(getattr(layer, "rgb", False)),
        "multiscale": bool(getattr(layer, "multiscale", False)),
    }


def save_layer(layer, path: str | Path) -> Path:
    """Write ``layer`` (image or labels) with the plugin writer; return the file written."""
    writer = write_labels if isinstance(layer, napari.layers.Labels) else write_image
    return Path(writer(str(path), layer.data, layer_attributes(layer))[0])


def save_selected_layer(viewer: napari.viewer.Viewer) -> Path | None:
    """Ask for a file name and save the active layer as a microCT TIFF with provenance."""
    from napari.utils.notifications import show_error, show_info
    from qtpy.QtWidgets import QFileDialog

    layer = viewer.layers.selection.active
    if not isinstance(layer, (napari.layers.Image, napari.layers.Labels)):
        show_error("Select one image or labels layer to save as a microCT TIFF.")
        return None
    path, _ = QFileDialog.getSaveFileName(
        None, f"Save '{layer.name}' as microCT TIFF", f"{layer.name}.tif", TIFF_FILTER
    )
    if not path:
        return None
    try:
        written = save_layer(layer, path)
    except (OSError, ValueError) as error:
        show_error(f"Could not save '{layer.name}': {error}")
        return None
    show_info(f"Saved '{layer.name}' to {written} (voxel size and provenance included).")
    return written
