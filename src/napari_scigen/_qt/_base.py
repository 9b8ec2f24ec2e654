"""Shared widget frame: layer pickers, a parameter form, progress bar, Run/Cancel.

A subclass only declares its form, snapshots parameters on the GUI thread
(:meth:`EngineWidget.snapshot`), builds the engine generator from that snapshot
(:meth:`EngineWidget.make_job`) and turns the result into layers
(:meth:`EngineWidget.on_result`). Everything else (threading, progress,
cancellation, errors) lives here, once.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .._napari.layers import next_layer_name, result_to_layer_tuples
from ..core.progress import CancelToken, Progress
from ..core.result import EngineResult
from ._runner import Job, start_job

if TYPE_CHECKING:
    import napari


class LayerPicker(ComboBox):
    """A combo box listing the viewer's layers of one type, kept up to date."""

    def __init__(
        self, viewer: napari.viewer.Viewer, layer_type: type, *, label: str, optional: bool = False
    ):
        self._viewer = viewer
        self._layer_type = layer_type
        self._optional = optional
        super().__init__(label=label, choices=self._choices, nullable=optional)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh)

    def _choices(self, _widget=None):
        names = [layer.name for layer in self._viewer.layers if isinstance(layer, self._layer_type)]
        return ([None] if self._optional else []) + names

    def _refresh(self, _event=None) -> None:
        self.reset_choices()

    @property
    def layer(self):
        """The selected layer, or ``None``."""
        name = self.value
        return self._viewer.layers[name] if name in self._viewer.layers else None


class EngineWidget(QWidget):
    """Base class of every engine dock widget."""

    #: Short engine name used in result layer names ("<source> <engine> <n>").
    engine_name = "engine"
    run_text = "Run"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.form = Container(labels=True)
        self._pending_sections: list[QWidget] = []
        self.build_form()
        self.run_button = QPushButton(self.run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        self._sections_layout = QVBoxLayout()
        self._sections_layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._sections_layout)
        for section in self._pending_sections:
            self._sections_layout.addWidget(section)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.job: Job | None = None
        self.last_result: EngineResult | None = None
        self.last_error: BaseException | None = None

    # -- to implement -----------------------------------------------------
    def build_form(self) -> None:
        """Add parameter widgets to ``self.form``."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Read every parameter (and copy layer data references) on the GUI thread."""
        raise NotImplementedError

    def make_job(self, spec: dict[str, Any], cancel: CancelToken) -> Generator[Progress, Any, Any]:
        """Build the engine generator from a snapshot (runs on the worker thread)."""
        raise NotImplementedError

    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        """Add the result to the viewer (GUI thread). Default: image layers next to the source."""
        self.add_result_layers(spec, result)

    # -- shared machinery -------------------------------------------------
    def add_section(self, widget: QWidget) -> None:
        """Add a Qt widget (e.g. a parameter form) below the main form (call in ``build_form``)."""
        self._pending_sections.append(widget)

    def add_result_layers(self, spec: dict[str, Any], result: EngineResult) -> list:
        """Add ``result`` as new layers named ``"<source> <method> <n>"``.

        Layers get the source's scale (times the result's ``voxel_scale``, e.g. after z
        upsampling), translate, units and contrast limits.
        """
        source = spec["source_layer"]
        label = spec.get("method") or self.engine_name
        name = next_layer_name([layer.name for layer in self.viewer.layers], source.name, label)
        scale = tuple(source.scale)
        if result.voxel_scale is not None:
            scale = result.output_voxel_size(scale)
        tuples = result_to_layer_tuples(
            result,
            name=name,
            scale=scale,
            translate=tuple(source.translate),
            source_metadata=dict(source.metadata),
            contrast_limits=tuple(source.contrast_limits)
            if hasattr(source, "contrast_limits")
            else None,
        )
        added = []
        for data, kwargs, layer_type in tuples:
            adder = getattr(self.viewer, f"add_{layer_type}")
            added.append(adder(data, **kwargs))
        return added

    def run(self) -> Job | None:
        """Snapshot the parameters and start the job; errors in the form are shown, not raised."""
        if self.job is not None and not self.job.finished:
            self.set_status("A job is already running; cancel it first.")
            return None
        try:
            spec = self.snapshot()
        except (ValueError, KeyError, TypeError) as error:
            self.show_error(error)
            return None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first event
        self.set_status("Starting…")
        self.last_result, self.last_error = None, None
        self.job = start_job(
            lambda token: self.make_job(spec, token),
            on_progress=self._on_progress,
            on_result=lambda result: self._on_result(spec, result),
            on_error=self.show_error,
            on_cancelled=lambda: self.set_status("Cancelled; no layer was added."),
            on_finished=self._on_finished,
        )
        return self.job

    def cancel(self) -> None:
        """Ask the running job to stop."""
        if self.job is not None and not self.job.finished:
            self.set_status("Cancelling…")
            self.job.cancel()

    def set_status(self, text: str) -> None:
        """Show a one-line status under the progress bar."""
        self.status.setText(text)

    def show_error(self, error: BaseException) -> None:
        """Show an error in the widget and as a napari notification."""
        self.last_error = error
        self.set_status(f"Error: {error}")
        try:
            from napari.utils.notifications import show_error

            show_error(f"{type(self).__name__}: {error}")
        except Exception:  # noqa: BLE001 - the widget still shows it
            pass

    def _on_progress(self, event: Progress) -> None:
        if event.total > 0:
            self.progress_bar.setRange(0, event.total)
            self.progress_bar.setValue(event.step)
        if event.message:
            self.set_status(event.message)

    def _on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        self.last_result = result
        self.on_result(spec, result)
        self.set_status("Done.")

    def _on_finished(self, job: Job) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if job.outcome == "done" else 0)


def layer_data(layer) -> np.ndarray:
    """A layer's data as an array (lazy data is read once, on the GUI thread)."""
    return np.asarray(layer.data)
