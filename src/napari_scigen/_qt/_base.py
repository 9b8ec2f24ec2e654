"""Shared widget frame: layer pickers, a parameter form, progress bar, Run/Cancel.

A subclass only declares its form, snapshots parameters on the GUI thread
(:meth:`EngineWidget.snapshot`), builds the engine generator from that snapshot
(:meth:`EngineWidget.make_job`) and turns the result into layers
(:meth:`EngineWidget.on_result`). Everything else lives here, once: threading,
progress in user terms (percent and time left, in the dock and in napari's activity
dock, see :mod:`._progress`), cancellation, errors, warnings before a job starts, and
showing the new result (selected, slider moved into its range). The form scrolls, so
any number of docks fits the screen.

A widget that sets :attr:`EngineWidget.whole_volume_task` also gets a *Run on the whole
volume* button: :meth:`EngineWidget.whole_volume_request` names the layer, engine and
inputs (without reading the data), and :func:`._batch.run_on_whole_volume` runs the
engine chunk by chunk on a local cluster into an OME-Zarr store that is shown as a
layer while it fills in. Extra result images are styled here too: an engine's
``images["uncertainty"]`` becomes the layer ``"<source> <method> uncertainty"``.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._napari.layers import layer_units, next_layer_name, result_to_layer_tuples, with_inputs
from ..core.progress import CancelToken, Progress
from ..core.result import EngineResult
from ..engines.registry import get_engine
from ._docks import (  # noqa: F401 - re-exported: the docks' helpers' former home
    PLUGIN,
    DockColumnFit,
    FormScrollArea,
    dock_of,
    open_dock,
    open_widgets,
    same_viewer,
    scrollable,
)
from ._docks import WIDGETS as _WIDGETS
from ._help import help_button
from ._outcome import FillOutcome, dock_labels, dock_message, fill_outcome, plain_message
from ._pickers import LayerPicker, MaskPicker  # noqa: F401 - the pickers' public home
from ._progress import JobProgress
from ._runner import Job, start_job

if TYPE_CHECKING:
    import napari


#: Shown once, with the first result: napari's default writer drops the science.
SAVE_HINT = (
    "To keep the voxel size and provenance of a result, save it with File ▸ IO Utilities ▸ "
    "Save selected layer as napari-scigen microCT TIFF…, or choose the file type "
    "'napari-scigen microCT TIFF (voxel size + provenance)' in File ▸ Save Selected "
    "Layer(s); napari's builtin writer stores neither."
)


#: Tooltip of the *Run on the whole volume* button.
WHOLE_VOLUME_TOOLTIP = (
    "run the chosen method chunk by chunk on a local cluster of worker processes, writing "
    "an OME-Zarr store beside the layer's file (or in the temp folder) that is shown as a "
    "layer at once and fills in as chunks land: for volumes larger than memory. Cancel "
    "keeps the finished chunks; running again resumes"
)


def uncertainty_style(data: np.ndarray) -> dict[str, Any]:
    """How an uncertainty image is shown: magma, added over the result, 0 to its 99.5th
    percentile (the spread is 0 on kept slices and unmasked pixels)."""
    values = np.asarray(data)
    positive = values[np.isfinite(values) & (values > 0)]
    high = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    return {
        "colormap": "magma",
        "blending": "additive",
        "opacity": 0.7,
        "contrast_limits": (0.0, high if high > 0 else 1.0),
    }


def show_layer(viewer, layer) -> None:
    """Select ``layer`` and, if the slider is outside its z range, move it to its first slice."""
    viewer.layers.selection.active = layer
    axis = viewer.dims.ndim - layer.ndim
    if layer.ndim < 3 or axis < 0 or viewer.dims.ndisplay == 3:
        return
    low = float(layer.translate[0])
    high = low + float(layer.scale[0]) * (layer.data.shape[0] - 1)
    if not low - 1e-9 <= float(viewer.dims.point[axis]) <= high + 1e-9:
        viewer.dims.set_point(axis, low)


class EngineWidget(DockColumnFit, QWidget):
    """Base class of every engine dock widget."""

    #: Short engine name used in result layer names ("<source> <engine> <n>").
    engine_name = "engine"
    #: What the dock is called in napari's menu (activity dock, notifications).
    title = "Engine"
    run_text = "Run"
    #: Tooltip of the Run button.
    run_tooltip = "start the job with the parameters above (they are read now)"
    #: Registry task of the *Run on the whole volume* button (``None``: no button).
    whole_volume_task: str | None = None
    #: Every open engine widget (so one widget can hand a result to another).
    instances: weakref.WeakSet = _WIDGETS
    #: Whether :data:`SAVE_HINT` was shown in this session.
    _save_hint_shown = False

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.form = Container(labels=True)
        self._pending_sections: list[QWidget] = []
        self.build_form()
        self.run_button = QPushButton(self.run_text)
        self.run_button.setToolTip(self.run_tooltip)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "stop the running job at its next step; no layer is added "
            "(StyleGAN training keeps a checkpoint)"
        )
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setToolTip(
            "share of the job done and the time left (elapsed / fraction); the job also "
            "shows in napari's activity dock (bottom right)"
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # messages can be selected and copied (a model id, a command to run, scores)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.help_button = help_button(type(self).__name__)  # this dock's docs page
        buttons.addWidget(self.help_button)
        self.whole_volume_button: QPushButton | None = None
        self.whole_volume_run = None
        if self.whole_volume_task is not None:
            self.whole_volume_button = QPushButton("Run on the whole volume")
            self.whole_volume_button.setToolTip(WHOLE_VOLUME_TOOLTIP)
            self.whole_volume_button.clicked.connect(self.run_whole_volume)
            from ._batch import warm_up_whole_volume

            warm_up_whole_volume()  # its click then does not import for a second
        # everything scrolls, so the dock can be as short as napari's window needs when
        # several docks share the side (the whole form fits a 1080-px screen on its own)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.addWidget(self.form.native)
        self._sections_layout = QVBoxLayout()
        self._sections_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.addLayout(self._sections_layout)
        for section in self._pending_sections:
            self._sections_layout.addWidget(section)
        self.body_layout.addLayout(buttons)
        if self.whole_volume_button is not None:
            self.body_layout.addWidget(self.whole_volume_button)
        self.body_layout.addWidget(self.progress_bar)
        self.body_layout.addWidget(self.status)
        self.body_layout.addStretch(1)
        self.scroll_area = scrollable(self.body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area, 1)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.job: Job | None = None
        self.progress: JobProgress | None = None
        self.last_result: EngineResult | None = None
        #: Which method filled the last result, when its provenance says (``filled_with``).
        self.last_outcome: FillOutcome | None = None
        self.last_error: BaseException | None = None
        self.last_warnings: list[str] = []
        self.new_layers: list = []
        EngineWidget.instances.add(self)
        methods = getattr(self, "methods", None)
        if methods is not None:  # another method's form: share the dock column again
            methods.combo.changed.connect(lambda _value=None: self.refit())

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
        if self.last_outcome is not None:  # what actually filled (a fallback, auto's pick)
            label = self.last_outcome.label
        name = next_layer_name([layer.name for layer in self.viewer.layers], source.name, label)
        scale = tuple(source.scale)
        if result.voxel_scale is not None:
            scale = result.output_voxel_size(scale)
        provenance = with_inputs(
            result.provenance,
            source,
            spec.get("mask"),
            getattr(spec.get("mask_layer"), "name", None),
        )
        tuples = result_to_layer_tuples(
            dataclasses.replace(result, provenance=provenance),
            name=name,
            scale=scale,
            translate=tuple(source.translate),
            source_metadata=dict(source.metadata),
            contrast_limits=tuple(source.contrast_limits)
            if hasattr(source, "contrast_limits")
            else None,
            units=layer_units(source),
        )
        uncertainty = f"{name} uncertainty"
        if uncertainty in (kwargs["name"] for _, kwargs, _ in tuples):
            number = name.rsplit(" ", 1)[-1]
            shown = f"{source.name} {label} uncertainty" + ("" if number == "1" else f" {number}")
        added = []
        for data, kwargs, layer_type in tuples:
            if kwargs["name"] == uncertainty:
                kwargs = {**kwargs, "name": shown, **uncertainty_style(data)}
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
        self._set_running(True)
        self.last_result, self.last_error = None, None
        self.show_warnings(spec.get("warnings", ()))
        self.progress = JobProgress(
            self.progress_bar, self.job_title(spec), self.cancel, on_tick=self.set_status
        )
        self.set_status("Starting…")
        self.job = start_job(
            lambda token: self.make_job(spec, token),
            on_progress=self._on_progress,
            on_result=lambda result: self._on_result(spec, result),
            on_error=self.show_error,
            on_cancelled=lambda: self._on_cancelled(spec),
            on_finished=self._on_finished,
        )
        return self.job

    def whole_volume_request(self) -> dict[str, Any]:
        """What *Run on the whole volume* runs, read on the GUI thread without loading data.

        Returns ``layer`` (the input layer), ``method``, ``params`` and the keyword inputs
        of :func:`._batch.run_on_whole_volume` (``missing``/``factor``, ``mask_layer``,
        ``slices``); raises ``ValueError`` for form errors.
        """
        raise NotImplementedError

    def run_whole_volume(self):
        """Run the chosen engine on the whole volume (chunked, into a zarr store shown as a
        layer that fills in); returns the :class:`._batch.WholeVolumeRun` or ``None``."""
        from . import _batch

        if self.job is not None and not self.job.finished:
            self.set_status("A job is already running; cancel it first.")
            return None
        try:
            request = self.whole_volume_request()
        except (ValueError, KeyError, TypeError) as error:
            self.show_error(error)
            return None
        layer, method = request.pop("layer"), request["method"]
        if not get_engine(self.whole_volume_task, method).deterministic:
            self.show_warnings(
                [
                    f"{method} is not deterministic (it trains or samples per chunk), so the "
                    "whole-volume result differs from a single Run, chunk to chunk"
                ]
            )
        self.last_result, self.last_error = None, None
        self.progress = JobProgress(
            self.progress_bar, f"{self.title} ({method}, whole volume)", self.cancel
        )
        self._set_running(True)
        self.set_status("Preparing the whole-volume run (inputs to disk, output store)…")
        try:
            run = _batch.run_on_whole_volume(
                self.viewer,
                layer,
                task=self.whole_volume_task,
                on_progress=self._on_progress,
                on_finished=self._on_whole_volume_done,
                on_error=self.show_error,
                **request,
            )
        except (ValueError, RuntimeError, OSError, ImportError) as error:
            self.show_error(error)
            self._whole_volume_ended(None)
            return None
        self.whole_volume_run, self.job = run, run.runner
        shown = run.layer in self.viewer.layers  # an error before any chunk removes it
        self.new_layers = [run.layer] if shown else []
        if shown:
            show_layer(self.viewer, run.layer)
        if run.finished:  # synchronous (NAPARI_SCIGEN_NOTHREADS)
            self._whole_volume_ended(run)
        else:
            run.runner.worker.finished.connect(lambda: self._whole_volume_ended(run))
        return run

    def _on_whole_volume_done(self, run) -> None:
        self.set_status(
            f"Done: the whole volume is in '{run.layer.name}' ({run.job.store}); open the "
            "store later with File ▸ Open (it keeps voxel size and provenance)."
        )

    def _whole_volume_ended(self, run) -> None:
        outcome = run.runner.outcome if run is not None and run.runner is not None else "error"
        if outcome == "cancelled":
            self.set_status(
                f"Cancelled; the finished chunks stay in {run.job.store} (Run on the whole "
                "volume again resumes)."
            )
        self._set_running(False)
        if self.progress is not None:
            self.progress.close(done=outcome == "done")
            self.progress = None

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if self.whole_volume_button is not None:
            self.whole_volume_button.setEnabled(not running)

    def job_title(self, spec: dict[str, Any]) -> str:
        """What runs, in words, for napari's activity dock: ``"Slice interpolation (flow)"``."""
        method = spec.get("method")
        return f"{self.title} ({method})" if method else self.title

    def show_warnings(self, warnings) -> None:
        """Show each warning as a napari notification (the job still starts)."""
        self.last_warnings = [str(text) for text in warnings if text]
        for text in self.last_warnings:
            self.notify(text, warning=True)

    def on_cancelled(self, spec: dict[str, Any]) -> None:
        """Called after a job was cancelled (GUI thread). Default: nothing."""

    def cancel(self) -> None:
        """Ask the running job to stop."""
        if self.job is not None and not self.job.finished:
            self.set_status("Cancelling…")
            self.job.cancel()

    def set_status(self, text: str) -> None:
        """Show a one-line status under the progress bar."""
        self.status.setText(text)

    def show_error(self, error: BaseException) -> None:
        """Show an error in the widget and as a napari notification.

        The message is the error's own text; only an unexpected kind of error (not an
        input, model, file or memory problem) is prefixed with its type.
        """
        self.last_error = error
        text = dock_message(error, dock_labels(self))  # options named as this dock's fields
        if not isinstance(error, (ValueError, RuntimeError, OSError, MemoryError)):
            text = f"{type(error).__name__}: {text}"
        self.set_status(f"Error: {text}")
        try:
            from napari.utils.notifications import show_error

            show_error(text)
        except Exception:  # noqa: BLE001 - the widget still shows it
            pass

    def _on_progress(self, event: Progress) -> None:
        progress = self.progress
        if progress is None:
            return
        if event.message:
            event = Progress(event.step, event.total, plain_message(event.message), event.preview)
        progress.measure(event)
        message = progress.message or "working…"  # without the engine's own time left
        self.set_status(f"{message} — {progress.text}" if event.total > 0 else message)
        progress.show(event)  # last: napari's activity bar may process events (and finish)

    def _on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        self.last_result = result
        method = spec.get("method")
        self.last_outcome = (
            fill_outcome(method, result.provenance, self.engine_name) if method else None
        )
        before = {id(layer) for layer in self.viewer.layers}
        self.on_result(spec, result)
        self.new_layers = [layer for layer in self.viewer.layers if id(layer) not in before]
        if self.new_layers:
            show_layer(self.viewer, self.new_layers[0])
            self._hint_saving()
        if self.last_outcome is None:
            self.set_status("Done.")
            return
        where = f" Layer: '{self.new_layers[0].name}'." if self.new_layers else ""
        self.set_status(f"Done. {self.last_outcome.message}{where}")
        self.notify(self.last_outcome.message, warning=self.last_outcome.warning)

    def notify(self, text: str, *, warning: bool = False) -> None:
        """A napari notification prefixed with the dock's title (never raises)."""
        try:
            from napari.utils.notifications import show_info, show_warning

            (show_warning if warning else show_info)(f"{self.title}: {text}")
        except Exception:  # noqa: BLE001 - a notification must never break a result
            pass

    @staticmethod
    def _hint_saving() -> None:
        """Once per session: how to save results without losing voxel size and provenance."""
        if EngineWidget._save_hint_shown:
            return
        EngineWidget._save_hint_shown = True
        try:
            from napari.utils.notifications import show_info

            show_info(SAVE_HINT)
        except Exception:  # noqa: BLE001 - a hint must never break a result
            pass

    def _on_cancelled(self, spec: dict[str, Any]) -> None:
        busy = self.job is not None and self.job.detached
        self.set_status(
            "Cancelled; no layer was added."
            + (" The engine stops after its current step, in the background." if busy else "")
        )
        self.on_cancelled(spec)

    def _on_finished(self, job: Job) -> None:
        self._set_running(False)
        if self.progress is not None:
            self.progress.close(done=job.outcome == "done")
            self.progress = None


def layer_data(layer) -> np.ndarray:
    """A layer's data as an array (lazy data is read once, on the GUI thread)."""
    return np.asarray(layer.data)
