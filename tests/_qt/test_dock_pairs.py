"""Docks opened together share the screen (issue 21, finding 4): the documented pairs,
Mask painting with Inpainting and Slice interpolation with Metrics, opened from napari's
plugin menu at 1920 x 1080 in either order, leave every button of both docks in view
(geometry: each button lies inside its dock's visible, unscrolled area)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import QAbstractButton, QApplication, QScrollArea

from napari_scigen._qt._docks import dock_of


def _settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def _on_window(widget, window) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def _cut_buttons(widget, window) -> list[str]:
    """Buttons of ``widget`` that are not wholly in view (scrolled or squashed away)."""
    dock = _on_window(dock_of(widget), window)
    cut = []
    for button in widget.findChildren(QAbstractButton):
        if not button.isVisibleTo(window):
            continue
        area = button.parent()
        while area is not None and not isinstance(area, QScrollArea):
            area = area.parent()
        view = _on_window(area.viewport(), window) if area is not None else dock
        rect = _on_window(button, window)
        if not (view.contains(rect) and dock.contains(rect) and window.rect().contains(rect)):
            cut.append(button.text() or button.toolTip()[:30])
    return cut


@pytest.mark.parametrize(
    "pair",
    [
        ("Mask painting", "Inpainting"),
        ("Inpainting", "Mask painting"),
        ("Slice interpolation", "Metrics"),
    ],
)
def test_documented_dock_pairs_keep_every_button_in_view_at_1080p(
    make_napari_viewer, small_rock, pair
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.add_image(small_rock.volume.copy(), name="rock", scale=(2.5, 2.5, 2.5))
    viewer.add_labels(np.zeros(small_rock.volume.shape, np.uint8), name="rock mask")
    widgets = {}
    for name in pair:
        _, widgets[name] = viewer.window.add_plugin_dock_widget("napari-scigen", name)
        _settle()
    window.resize(1920, 1080)
    _settle()
    assert window.height() <= 1080
    cut = {name: _cut_buttons(widget, window) for name, widget in widgets.items()}
    assert cut == dict.fromkeys(pair, []), {
        name: dock_of(w).height() for name, w in widgets.items()
    }
