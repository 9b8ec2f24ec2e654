"""One dock per widget (issue 21, finding 6): the docks' own buttons ("Use in Slice
interpolation", "Compare engines…"), ``napari -w napari-scigen`` and the Plugins menu all
name a dock alike, so napari reuses it instead of opening a second one."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_scigen._qt._compare_widget import CompareWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget


def _menu(command: str) -> None:
    """Click the widget's entry in napari's Plugins menu."""
    from napari._app_model import get_app_model

    get_app_model().commands.execute_command(command).result()
    QApplication.processEvents()


def _docks(viewer, widget_class) -> list[QDockWidget]:
    window = viewer.window._qt_window
    return [
        dock
        for dock in window.findChildren(QDockWidget)
        if dock.widget() is not None
        and dock.widget().findChildren(widget_class)
        or isinstance(getattr(dock, "inner_widget", lambda: None)(), widget_class)
    ]


def test_buttons_and_the_plugins_menu_open_one_dock_per_widget(make_napari_viewer, small_rock):
    viewer = make_napari_viewer()
    viewer.add_image(small_rock.volume.copy(), name="rock")
    viewer.add_labels(np.zeros(small_rock.volume.shape, np.uint8), name="rock mask")

    _, stylegan = viewer.window.add_plugin_dock_widget("napari-scigen", "StyleGAN")
    interpolate = stylegan.use_in_interpolation()  # opens Slice interpolation
    assert isinstance(interpolate, InterpolateWidget)
    _menu("napari-scigen.interpolate_widget")  # the menu entry toggles that dock: hidden
    _menu("napari-scigen.interpolate_widget")  # and shown again, never a second one
    assert len(_docks(viewer, InterpolateWidget)) == 1
    assert stylegan.use_in_interpolation() is interpolate

    _menu("napari-scigen.compare_widget")  # menu first, then the Metrics button
    _, metrics = viewer.window.add_plugin_dock_widget("napari-scigen", "Metrics")
    metrics.reference_picker.value = "rock"
    compare = metrics.open_compare()
    assert isinstance(compare, CompareWidget)
    assert len(_docks(viewer, CompareWidget)) == 1
    dock = _docks(viewer, CompareWidget)[0]
    dock.hide()  # closed by the user: the button shows it again
    assert metrics.open_compare() is compare and not dock.isHidden()
    assert len(_docks(viewer, CompareWidget)) == 1
