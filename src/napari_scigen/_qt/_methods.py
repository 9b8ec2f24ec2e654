"""A method picker for one task, with the chosen engine's parameter form below it.

The choices are the task's registered engines (:mod:`napari_scigen.engines.registry`);
each engine's form is a :class:`~napari_scigen._qt._fields.ParamsForm` built from its
params declarations, shown while that engine is chosen. Registering an engine is
enough for it to appear here with all its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from magicgui.widgets import ComboBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..engines.registry import engines, get_engine
from ._fields import ParamsForm


class MethodChooser:
    """Combo box of a task's engines plus the selected engine's parameters.

    Parameters
    ----------
    task : str
        Registry task, e.g. ``"interpolate"``.
    exclude : sequence of str
        Parameter fields the widget sets itself.
    default : str, optional
        Initially selected method (default: the first registered).

    Attributes
    ----------
    combo : magicgui ComboBox
        Put it in the widget's form.
    native : QWidget
        The parameter forms (only the chosen engine's is visible).
    forms : dict of str to ParamsForm
        One per engine.
    """

    def __init__(self, task: str, *, exclude: Sequence[str] = (), default: str | None = None):
        self.task = task
        registered = engines(task)
        tooltip = "\n".join(f"{e.name}: {e.description}" for e in registered)
        self.combo = ComboBox(
            choices=[e.name for e in registered],
            value=default or registered[0].name,
            label="method",
            tooltip=tooltip,
            name="method",
        )
        self.forms = {e.name: ParamsForm(e.params_class, exclude=exclude) for e in registered}
        self.native = QWidget()
        layout = QVBoxLayout(self.native)
        layout.setContentsMargins(0, 0, 0, 0)
        for form in self.forms.values():
            layout.addWidget(form.native)
        self.combo.changed.connect(self._show_selected)
        self._show_selected()

    @property
    def method(self) -> str:
        """The selected method's name."""
        return self.combo.value

    @method.setter
    def method(self, name: str) -> None:
        get_engine(self.task, name)  # raise for unknown names
        self.combo.value = name

    @property
    def form(self) -> ParamsForm:
        """The selected method's form."""
        return self.forms[self.method]

    def params(self, **fixed):
        """The selected engine's params from its form (``ValueError`` on bad values)."""
        return self.form.params(**fixed)

    def _show_selected(self, _value=None) -> None:
        for name, form in self.forms.items():
            form.native.setVisible(name == self.method)
