"""Form fields built from an engine's parameter declarations.

:class:`ParamsForm` turns the :func:`~napari_scigen.core.params.param` declarations of
a params dataclass into magicgui widgets (spin boxes with the declared bounds, combo
boxes for choices, check boxes, file pickers, text fields), each with the declared help
as its tooltip. Advanced parameters go into a collapsed section. The CLI flags are built
from the same declarations, so the two front-ends cannot drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..core.params import FieldSpec, ParameterError, fields_of, parse_text

#: Largest magnitude an unbounded integer spin box accepts.
INT_LIMIT = 2**31 - 1
#: Largest magnitude an unbounded float spin box accepts.
FLOAT_LIMIT = 1e9


def _sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, one full stop at the end."""
    text = text.strip()
    return f"{text[:1].upper()}{text[1:].rstrip('.')}." if text else ""


def tooltip_for(spec: FieldSpec) -> str:
    """The declared help plus bounds and default, for a widget tooltip: one line each,
    the help as a sentence (the declarations' help is a lower-case phrase, and joined
    with spaces it ran into "Range: …")."""
    parts = [_sentence(spec.help)]
    info = spec.info
    if info.min is not None or info.max is not None:
        low = "" if info.min is None else f"{'>' if info.min_exclusive else '≥'} {info.min:g}"
        high = "" if info.max is None else f"≤ {info.max:g}"
        parts.append("Range: " + ", ".join(p for p in (low, high) if p) + ".")
    default = spec.default
    if isinstance(default, tuple):
        default = ", ".join(map(str, default))
    parts.append(f"Default: {default if default not in (None, '') else 'none'}.")
    if spec.info.cli:
        parts.append(f"CLI: {spec.flag}")
    return "\n".join(part for part in parts if part)


def _float_step(spec: FieldSpec, value: Any) -> float:
    if spec.info.step is not None:
        return float(spec.info.step)
    reference = abs(float(value)) if isinstance(value, (int, float)) and value else 1.0
    return 10 ** math.floor(math.log10(reference)) / 10 if reference < 1 else 0.1


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def widget_for(spec: FieldSpec, value: Any):
    """A magicgui widget for one declared field, holding ``value``."""
    info = spec.info
    common = {"label": spec.label, "tooltip": tooltip_for(spec), "name": spec.name}
    if spec.base is bool:
        return CheckBox(
            value=bool(value), text=spec.label, tooltip=common["tooltip"], name=spec.name
        )
    if info.kind == "device":
        from ..core.device import DEVICE_CHOICES

        choices = list(DEVICE_CHOICES) + ([value] if value not in DEVICE_CHOICES else [])
        return ComboBox(value=value, choices=choices, **common)
    if info.choices is not None and spec.base is not tuple:
        choices = list(info.choices) + ([None] if spec.optional else [])
        return ComboBox(value=value, choices=choices, nullable=spec.optional, **common)
    if info.kind in ("path", "dir"):
        mode = "d" if info.kind == "dir" else "r"
        widget = FileEdit(mode=mode, **common)
        _show_path(widget, value)
        return widget
    if spec.base is int and not spec.optional:
        low = -INT_LIMIT if info.min is None else int(info.min) + (1 if info.min_exclusive else 0)
        high = INT_LIMIT if info.max is None else int(info.max)
        return SpinBox(value=int(value), min=low, max=high, step=int(info.step or 1), **common)
    if spec.base is float and not spec.optional:
        step = _float_step(spec, value)
        low = -FLOAT_LIMIT if info.min is None else float(info.min)
        if info.min_exclusive:
            low += step / 10
        high = FLOAT_LIMIT if info.max is None else float(info.max)
        return FloatSpinBox(value=float(value), min=low, max=high, step=step, **common)
    # optional numbers, text and tuples: a text field ("" = none)
    return LineEdit(value=_text(value), **common)


def _show_path(widget: FileEdit, value: Any) -> None:
    """Show a path in a file picker; none stays an empty field (not the working folder)."""
    if value:
        widget.value = value
    else:
        widget.line_edit.value = ""


def read_widget(spec: FieldSpec, widget) -> Any:
    """The Python value of a widget built by :func:`widget_for`."""
    value = widget.value
    if isinstance(widget, FileEdit):
        text = "" if value is None else str(value)
        if text in ("", "."):
            return None if spec.optional else ""
        return str(Path(text))
    if isinstance(widget, LineEdit) and (spec.base is not str or spec.optional):
        try:
            return parse_text(spec, value)
        except ValueError as error:
            raise ValueError(f"{spec.label}: {error}") from None
    return value


class ParamsForm:
    """The widgets of one params class: a basic section and a collapsed "Advanced" one.

    Parameters
    ----------
    cls : type
        An :class:`~napari_scigen.core.params.EngineParams` subclass.
    exclude : sequence of str
        Fields the widget sets itself (not shown).
    values : params instance or mapping, optional
        Initial values (default: the declared defaults).

    Attributes
    ----------
    widgets : dict of str to magicgui widget
        One per shown field, keyed by field name.
    native : QWidget
        Put this in the dock.
    """

    def __init__(self, cls: type, *, exclude: Sequence[str] = (), values=None):
        from superqt import QCollapsible

        self.cls = cls
        self.specs = {
            spec.name: spec for spec in fields_of(cls) if spec.info.gui and spec.name not in exclude
        }
        initial = self._as_mapping(values)
        self.widgets: dict[str, Any] = {}
        self.basic = Container(labels=True)
        self.advanced = Container(labels=True)
        for name, spec in self.specs.items():
            widget = widget_for(spec, initial.get(name, spec.default))
            self.widgets[name] = widget
            (self.advanced if spec.info.advanced else self.basic).append(widget)
        self.native = QWidget()
        layout = QVBoxLayout(self.native)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.basic.native)
        self.collapsible = None
        if len(self.advanced):
            self.collapsible = QCollapsible("Advanced")
            self.collapsible.setToolTip(
                "more parameters, collapsed: the defaults suit most data "
                f"({', '.join(spec.label for spec in self.specs.values() if spec.info.advanced)})"
            )
            self.collapsible.addWidget(self.advanced.native)
            layout.addWidget(self.collapsible)

    @staticmethod
    def _as_mapping(values) -> dict[str, Any]:
        if values is None:
            return {}
        if isinstance(values, Mapping):
            return dict(values)
        return values.to_dict()

    def __getitem__(self, name: str):
        return self.widgets[name]

    def __contains__(self, name: str) -> bool:
        return name in self.widgets

    def values(self) -> dict[str, Any]:
        """The shown fields' current values (raises ``ValueError`` on unreadable text)."""
        return {name: read_widget(self.specs[name], w) for name, w in self.widgets.items()}

    def params(self, **fixed: Any):
        """The params dataclass from the form plus ``fixed`` fields.

        Raises
        ------
        ValueError
            Naming the field by its label, e.g. ``"steps: must be >= 1, got 0"``.
        """
        try:
            return self.cls.from_mapping(self.values(), **fixed)
        except ParameterError as error:
            spec = self.specs.get(error.field)
            label = spec.label if spec is not None else error.field
            raise ValueError(f"{label}: {error.reason}") from None

    def set_values(self, values) -> None:
        """Show ``values`` (a params instance or a mapping) in the widgets."""
        for name, value in self._as_mapping(values).items():
            if name not in self.widgets:
                continue
            widget = self.widgets[name]
            if isinstance(widget, LineEdit):
                widget.value = _text(value)
            elif isinstance(widget, FileEdit):
                _show_path(widget, value)
            else:
                widget.value = value
