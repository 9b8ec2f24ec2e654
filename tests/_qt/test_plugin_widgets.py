"""Every widget in the manifest opens from napari's plugin menu (what ``napari -w`` does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_scigen" / "napari.yaml"
WIDGET_NAMES = [
    w["display_name"] for w in yaml.safe_load(MANIFEST.read_text())["contributions"]["widgets"]
]


@pytest.mark.parametrize("display_name", WIDGET_NAMES)
def test_plugin_widget_docks_in_viewer(make_napari_viewer, display_name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-scigen", display_name)
    assert dock is not None and widget is not None
    # napari hands plugins a proxy of the viewer: it must see the same layers
    viewer.add_image(np.zeros((4, 8, 8)), name="probe")
    assert [layer.name for layer in widget.viewer.layers] == ["probe"]
