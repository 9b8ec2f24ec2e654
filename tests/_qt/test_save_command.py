"""Saving keeps the science (issue 13, defect 2): the plugin writer is named for what it
keeps, a File-menu command always uses it, and the first result says how to save."""

from __future__ import annotations

import numpy as np

from napari_scigen._qt import _base
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._save import TIFF_FILTER, has_provenance, save_selected_layer
from napari_scigen.core.io import read_volume


def test_the_save_command_is_in_the_file_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    menu = get_app_model().menus.get_menu("napari/file/io_utilities")
    assert "napari-scigen.save_selected_layer" in [
        getattr(item, "command", None) and item.command.id for item in menu
    ]


def test_save_selected_layer_writes_voxel_size_and_provenance(
    rock_viewer, nothreads, tmp_path, monkeypatch
):
    viewer, image = rock_viewer
    mask = np.zeros(image.data.shape, np.uint8)
    mask[5, 30:50, 30:50] = 1
    viewer.add_labels(mask, name="rock mask", scale=image.scale)
    widget = InpaintWidget(viewer)
    widget.run()
    result = viewer.layers["rock biharmonic 1"]
    assert viewer.layers.selection.active is result and has_provenance(result)
    asked = []

    def dialog(parent, caption, name, filters):
        asked.append((caption, name, filters))
        return str(tmp_path / "result.tif"), filters

    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getSaveFileName", dialog)
    written = save_selected_layer(viewer)
    assert asked == [
        ("Save 'rock biharmonic 1' as microCT TIFF", "rock biharmonic 1.tif", TIFF_FILTER)
    ]
    volume = read_volume(written)
    np.testing.assert_array_equal(volume.data, result.data)
    assert tuple(volume.voxel_size) == (5.0, 2.5, 2.5) and volume.unit == "um"
    assert volume.provenance["engine"] == "inpaint-biharmonic"


def test_the_first_result_of_a_session_says_how_to_keep_its_provenance(
    rock_viewer, nothreads, monkeypatch
):
    viewer, image = rock_viewer
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown.append)
    monkeypatch.setattr(_base.EngineWidget, "_save_hint_shown", False)
    mask = np.zeros(image.data.shape, np.uint8)
    mask[5, 30:50, 30:50] = 1
    viewer.add_labels(mask, name="rock mask")
    widget = InpaintWidget(viewer)
    widget.run()
    widget.run()
    assert shown == [_base.SAVE_HINT]
    assert "napari-scigen microCT TIFF (voxel size + provenance)" in _base.SAVE_HINT
