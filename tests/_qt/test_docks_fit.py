"""Docks that fit (issue 13, defects 4 and 9): every dock at once on a 1920 x 1080 screen,
scrolling forms, collapsed advanced parameters, a readable Metrics table, and a tooltip on
every control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QScrollArea,
    QWidget,
)
from superqt import QCollapsible

from napari_scigen._qt._fields import ParamsForm

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_scigen" / "napari.yaml"
WIDGET_NAMES = [
    w["display_name"] for w in yaml.safe_load(MANIFEST.read_text())["contributions"]["widgets"]
]
#: What a user clicks, types into or picks from.
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView)


def _settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def _forms(widget) -> list[ParamsForm]:
    found = [value for value in vars(widget).values() if isinstance(value, ParamsForm)]
    methods = getattr(widget, "methods", None)
    return found + (list(methods.forms.values()) if methods is not None else [])


def test_all_docks_open_fit_a_1080p_screen_and_have_tooltips(
    make_napari_viewer, small_rock, tmp_path
):
    """The screenshot test: every dock of the manifest opened from napari's plugin menu (what
    ``napari -w`` does) at 1920 x 1080; the window stays on the screen, every form scrolls,
    advanced parameters are collapsed and every visible control has a tooltip."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.add_image(small_rock.volume.copy(), name="rock", scale=(2.5, 2.5, 2.5))
    viewer.add_labels(np.zeros(small_rock.volume.shape, np.uint8), name="rock mask")
    widgets = {}
    for name in WIDGET_NAMES:
        dock, widgets[name] = viewer.window.add_plugin_dock_widget("napari-scigen", name)
        assert dock is not None and widgets[name] is not None, name
        _settle()
        assert window.width() <= 1920 and window.height() <= 1080, (name, window.size())
    window.resize(1920, 1080)
    _settle()
    assert window.width() <= 1920 and window.height() <= 1080, window.size()
    # napari hands plugins a proxy of the viewer: it must see the same layers
    viewer.add_image(np.zeros((4, 8, 8)), name="probe")
    untipped = {}
    for name, widget in widgets.items():
        assert [layer.name for layer in widget.viewer.layers][-1] == "probe", name
        assert widget.findChildren(QScrollArea), f"{name}: the form does not scroll"
        for form in _forms(widget):
            if any(spec.info.advanced for spec in form.specs.values()):
                assert isinstance(form.collapsible, QCollapsible), name
                assert not form.collapsible.isExpanded(), f"{name}: advanced shown"
        missing = _controls_without_tooltip(widget)
        if missing:
            untipped[name] = missing
    shot = viewer.screenshot(str(tmp_path / "all_docks.png"), canvas_only=False)
    assert shot.shape[0] <= 1080 and shot.shape[1] <= 1920
    assert shot[..., :3].std() > 5
    assert untipped == {}, "controls without a tooltip"


def test_the_metrics_table_fits_its_dock_and_keeps_the_full_text_in_tooltips(
    make_napari_viewer, qtbot
):
    from napari_scigen._qt._metrics_widget import MetricsWidget

    viewer = make_napari_viewer(show=True)
    widget = MetricsWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    note = "skipped: the LPIPS backbone weights alexnet-owt-7be5be79.pth are not in " * 3
    rows = [
        {"metric": "ssim", "value": 0.91234, "region": "inside", "details": {"std": 0.1}},
        {"metric": "lpips", "value": float("nan"), "region": "all", "details": {}, "note": note},
        {
            "metric": "porosity",
            "value": 0.25,
            "region": "all",
            "details": {"reference": 0.2, "relative_error": 0.25},
        },
    ]
    widget.show_rows(rows)
    _settle()
    table = widget.table
    header = table.horizontalHeader()
    used = sum(header.sectionSize(column) for column in range(table.columnCount()))
    assert used <= table.viewport().width() + 1  # no sideways scrolling
    assert not table.horizontalScrollBar().isVisible()
    assert table.item(1, 4).toolTip() == note.strip() or table.item(1, 4).toolTip() == note
    # the porosity error is in the value column, not only in the details
    assert table.item(2, 1).text() == "0.25 (ref 0.2, error +25.0 %)"
    assert table.item(2, 1).data(256) == 0.25  # Qt.UserRole: the exact value


def _controls_without_tooltip(widget: QWidget) -> list[str]:
    missing = []
    for control in widget.findChildren(QWidget):
        if not isinstance(control, CONTROLS) or not control.isVisibleTo(widget):
            continue
        parent = control.parentWidget()  # e.g. a file picker's line edit and button
        if control.toolTip().strip() or (parent is not None and parent.toolTip().strip()):
            continue
        text = control.text() if hasattr(control, "text") else ""
        missing.append(f"{type(control).__name__} {text!r}")
    return missing
