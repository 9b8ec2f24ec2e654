"""Docks that share the screen: scrolling forms, one dock per widget, a fair share of height.

* :class:`FormScrollArea` / :func:`scrollable`: a form that scrolls, as wide as it needs;
* :func:`open_dock`: the one dock of a widget class, opened like napari's Plugins menu
  opens it (the manifest's display name is the plugin name, so napari's dock names agree
  and a second dock is never made);
* :class:`DockColumnFit`: when one of the plugin's docks is shown (or its form changes
  size), the docks stacked in its column share the column's height by what each needs
  (Qt would otherwise give the newest dock nearly all of it, and squash the others to a
  sliver with their buttons cut).
"""

from __future__ import annotations

import weakref

from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

#: Every open dock widget of the plugin (engine docks and Mask painting).
WIDGETS: weakref.WeakSet = weakref.WeakSet()


class FormScrollArea(QScrollArea):
    """A vertical scroll area as wide as its content needs, but as short as asked.

    The width follows the form (no field is ever cut off, and there is never a sideways
    scroll bar); the height can shrink to a few rows when napari stacks many docks, and
    is the form's full height when there is room.
    """

    #: Smallest height (px): the first row stays visible (every dock of the plugin, 14 with
    #: the registry-built task docks, still fits one 1080-px column at once).
    MIN_HEIGHT = 40

    def _extra_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        content = self.widget()
        width = content.minimumSizeHint().width() if content is not None else 0
        return QSize(width + self._extra_width(), self.MIN_HEIGHT)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        content = self.widget()
        if content is None:
            return super().sizeHint()
        hint = content.sizeHint()
        return QSize(hint.width() + self._extra_width(), hint.height() + 2 * self.frameWidth())


def scrollable(content: QWidget) -> QScrollArea:
    """``content`` in a vertical :class:`FormScrollArea` (no frame), so a dock can be short."""
    area = FormScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    return area


def same_viewer(a, b) -> bool:
    """Whether two viewer handles (napari may hand plugins a proxy) are one viewer."""
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def open_widgets(viewer, widget_class: type) -> list:
    """The open dock widgets of ``widget_class`` on ``viewer``."""
    return [
        w for w in list(WIDGETS) if isinstance(w, widget_class) and same_viewer(w.viewer, viewer)
    ]


#: The plugin's name in napari. The manifest's ``display_name`` is the same, so napari's
#: Plugins menu, ``napari -w napari-scigen`` and :func:`open_dock` give a dock one name
#: (napari reuses a dock by that name instead of opening a second one).
PLUGIN = "napari-scigen"


def dock_of(widget):
    """The ``QDockWidget`` holding ``widget``, or ``None`` when it is not docked."""
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parent()
    return widget


def open_dock(viewer, widget_class: type, widget_name: str):
    """The one ``widget_class`` dock of ``viewer``, shown and raised; opened like the Plugins
    menu opens it (``widget_name``: its menu entry) when there is none. Never a second one.

    Raises
    ------
    RuntimeError
        napari cannot open it (a viewer without a window).
    """
    widgets = open_widgets(viewer, widget_class)
    if widgets:
        widget = widgets[0]
    else:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, widget_name)
    dock = dock_of(widget)
    if dock is not None:
        dock.show()
        dock.raise_()
    return widget


def share_dock_column(widget: QWidget) -> None:
    """Give each dock stacked with ``widget``'s dock a height in proportion to its need.

    The docks of the same main-window area that are shown (not floating, not hidden behind
    a tab) get their size hints as target heights; Qt scales them to the room there is,
    never below a dock's minimum, without resizing the window.
    """
    dock = dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return
    area = window.dockWidgetArea(dock)
    column = [
        d
        for d in window.findChildren(QDockWidget)
        if d.isVisible() and not d.isFloating() and window.dockWidgetArea(d) == area
    ]
    if len(column) < 2:
        return
    column.sort(key=lambda d: d.geometry().top())
    window.resizeDocks(column, [d.sizeHint().height() for d in column], Qt.Orientation.Vertical)


class DockColumnFit:
    """Mixin of the plugin's dock widgets: share the dock column's height when shown.

    Call :meth:`refit` after the form changed size (another method chosen).
    """

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refit()

    def refit(self) -> None:
        """Re-share the dock column's height once Qt has laid the docks out."""
        ref = weakref.ref(self)

        def later() -> None:
            widget = ref()
            try:
                if widget is not None:
                    share_dock_column(widget)
            except RuntimeError:  # the Qt object went away in between
                pass

        QTimer.singleShot(0, later)
