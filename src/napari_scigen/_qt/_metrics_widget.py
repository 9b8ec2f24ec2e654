"""Dock widget: compare a generated layer with its reference (SSIM, PSNR, LPIPS, FID, ...).

The metrics run in a worker through :func:`napari_scigen.api.evaluate_job`; the rows
it returns fill a table that can be copied (Ctrl+C or "Copy": tab-separated, ready for
a spreadsheet) and exported as CSV or JSON. SSIM and LPIPS maps become image layers
over the generated layer. A metric whose weights are missing shows as a row with a
note instead of failing the others.

When the generated layer is a rebuilt volume (its provenance lists
``extra["synthesized_indices"]``, as every slice-interpolation result does), the
default region is *rebuilt slices only*: the kept slices are copies of the reference
and would flatter every score. With a mask, every paired metric (GMSD and morphology
too) is reported inside and outside it.

*Compare engines…* opens the Compare engines dock (:mod:`._compare_widget`) on the
reference volume: several engines run on the same slices and are scored side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit
from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QGuiApplication, QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
)

from .. import api
from .._napari.layers import layer_metadata, next_layer_name, source_geometry
from ..core.params import field_spec
from ..core.progress import CancelToken
from ..core.provenance import to_jsonable
from ..core.result import EngineResult
from ..core.validation import check_mask
from ..metrics.evaluate import DEFAULT_METRICS, EVALUATE_METRICS
from ..metrics.pixel import SPAN
from ..metrics.report import (
    COLUMNS,
    format_value,
    rows_to_tsv,
    summarize_details,
    write_rows_csv,
    write_rows_json,
)
from ..metrics.settings import MetricsParams
from ._base import EngineWidget, LayerPicker, layer_data, open_dock
from ._fields import widget_for
from ._pickers import MaskPicker

#: Display name of the Compare engines dock (napari.yaml).
COMPARE_DOCK = "Compare engines"

REGION_REBUILT = "rebuilt slices only"
REGION_WHOLE = "whole image (ignore mask)"
#: Region choices: label shown -> (pass the mask, regions kept, only the rebuilt slices).
REGION_CHOICES = {
    REGION_REBUILT: (False, None, True),
    "inside and outside": (True, None, False),
    "inside": (True, "inside", False),
    "outside": (True, "outside", False),
    REGION_WHOLE: (False, None, False),
}
#: The mask-based region choices.
MASK_REGIONS = ("inside and outside", "inside", "outside")

#: One line per metric, for the check boxes' tooltips.
METRIC_HELP = {
    "ssim": "structural similarity, 1 = identical (pixel by pixel, same shape needed)",
    "psnr": "peak signal-to-noise ratio in dB, higher = closer (pixel by pixel)",
    "lpips": "learned perceptual distance, 0 = identical (needs the local backbone weights)",
    "gmsd": "gradient magnitude similarity deviation, 0 = same edges (no weights needed)",
    "morphology": "pore statistics (porosity, surface, pore sizes, two-point correlation) "
    "of both, segmented with the reference's Otsu threshold",
    "fid": "Frechet Inception distance between the two stacks' slices (3D layers only)",
    "kid": "kernel Inception distance between the two stacks' slices (3D layers only)",
    "prdc": "precision, recall, density and coverage of the generated slices (3D only)",
    "clipscore": "agreement of the generated slices with the CLIP prompt (CLIP weights)",
}


def rebuilt_slices(layer) -> tuple[int, ...] | None:
    """The slices an interpolation engine rebuilt in ``layer`` (from its provenance)."""
    if layer is None:
        return None
    provenance = layer.metadata.get("provenance") or {}
    indices = (provenance.get("extra") or {}).get("synthesized_indices")
    return tuple(int(i) for i in indices) if indices else None


def value_text(row: dict) -> str:
    """The value cell: the value, and its error against the reference when there is one.

    Examples
    --------
    >>> value_text({"metric": "porosity", "value": 0.25,
    ...             "details": {"reference": 0.2, "relative_error": 0.25}})
    '0.25 (ref 0.2, error +25.0 %)'
    """
    text = format_value(row["value"])
    details = row.get("details") or {}
    error = details.get("relative_error")
    if isinstance(error, (int, float)) and "reference" in details:
        shown = "n/a" if math.isnan(error) else f"{100 * error:+.1f} %"
        text += f" (ref {format_value(details['reference'])}, error {shown})"
    return text


#: Data-range choices for SSIM/PSNR.
RANGE_AUTO = "dtype span (integers) / reference max-min"
RANGE_CONTRAST = "window: reference contrast limits"
RANGE_PERCENTILE = "window: reference 0.5-99.5 percentiles"
RANGE_WINDOW = "window: low/high below"
RANGE_VALUE = "data range: value below"
RANGE_CHOICES = (RANGE_AUTO, RANGE_CONTRAST, RANGE_PERCENTILE, RANGE_WINDOW, RANGE_VALUE)

#: Contrast limits of the map layers.
MAP_CONTRAST = {"ssim map": (0.0, 1.0)}


# ---------------------------------------------------------------------------------------
# Qt
# ---------------------------------------------------------------------------------------


def _at_slices(data, slices, shape) -> np.ndarray:
    """``data`` (one map per slice of ``slices``) placed in a NaN volume of ``shape``'s depth."""
    data = np.asarray(data)
    if slices is None or data.ndim != 3 or data.shape[0] != len(slices) or len(shape) != 3:
        return data
    full = np.full((shape[0], *data.shape[1:]), np.nan, dtype=np.float32)
    full[list(slices)] = data
    return full


class MetricsTable(QTableWidget):
    """The results table; Ctrl+C copies the selected rows (all rows if none) as TSV."""

    def __init__(self):
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        # fit the dock's width: short columns to their contents, the long ones share the
        # rest and elide (the full text is in each cell's tooltip): no sideways scrolling
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        for column, name in enumerate(COLUMNS):
            mode = (
                QHeaderView.ResizeMode.Stretch
                if name in ("details", "note")
                else QHeaderView.ResizeMode.ResizeToContents
            )
            header.setSectionResizeMode(column, mode)
        self.setToolTip(
            "the results; hover a cell for its full text, select rows and press Ctrl+C to copy"
        )
        self.rows: list[dict] = []

    def set_rows(self, rows: list[dict]) -> None:
        """Show ``rows`` (evaluation rows) in the table."""
        self.rows = list(rows)
        self.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            details = row.get("details") or {}
            cells = (
                str(row["metric"]),
                value_text(row),
                str(row["region"]),
                summarize_details(details),
                str(row.get("note", "")),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if COLUMNS[column] == "value":
                    item.setData(Qt.ItemDataRole.UserRole, row["value"])
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                    item.setToolTip(f"{row['value']!r}  {text}")
                if COLUMNS[column] == "details":
                    item.setToolTip(json.dumps(to_jsonable(details), indent=1)[:4000])
                self.setItem(index, column, item)

    def selected_rows(self) -> list[dict]:
        """The rows selected in the table (all rows when nothing is selected)."""
        indices = sorted({index.row() for index in self.selectedIndexes()})
        return [self.rows[i] for i in indices] if indices else list(self.rows)

    def copy_selection(self) -> str:
        """Put the selected rows (all if none) on the clipboard as TSV; return the text."""
        text = rows_to_tsv(self.selected_rows())
        QGuiApplication.clipboard().setText(text)
        return text

    def event(self, event) -> bool:
        # Take Ctrl+C before window-level shortcuts (napari's) can claim it.
        if event.type() == QEvent.Type.ShortcutOverride and event.matches(
            QKeySequence.StandardKey.Copy
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
            event.accept()
            return
        super().keyPressEvent(event)


class MetricsWidget(EngineWidget):
    """Compare a generated layer with a reference layer and tabulate the metrics."""

    engine_name = "metrics"
    title = "Metrics"
    run_text = "Evaluate"
    run_tooltip = "compute the ticked metrics of 'generated' against 'reference'"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(napari_viewer)
        self.provenance: dict[str, Any] = {}
        self.map_layers: list = []
        self.table = MetricsTable()
        self.table.setMinimumHeight(160)
        # the long columns (details, note) are narrow in a dock: the selected rows' (or
        # every row's) details and notes in full, wrapped and selectable, under the table
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes.setToolTip("the details and notes of the selected rows (all if none)")
        self.table.itemSelectionChanged.connect(self._show_notes)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected rows (all if none) as tab-separated text")
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_csv_button.setToolTip("save the rows as CSV (full-precision values)")
        self.export_json_button = QPushButton("Export JSON…")
        self.export_json_button.setToolTip("save the rows and the run's provenance as JSON")
        buttons = QHBoxLayout()
        for button in (self.copy_button, self.export_csv_button, self.export_json_button):
            button.setEnabled(False)
            buttons.addWidget(button)
        self.compare_button = QPushButton("Compare engines…")
        self.compare_button.setToolTip(
            "open the Compare engines dock on the reference volume: several engines rebuild "
            "the same slices and are scored side by side (a table, a figure, a report)"
        )
        self.compare_button.clicked.connect(self.open_compare)
        # below the form, inside the scroll area (so the dock stays short on small screens)
        layout = self.body_layout
        layout.insertWidget(layout.count() - 1, self.table, 1)
        layout.insertWidget(layout.count() - 1, self.notes)
        layout.insertLayout(layout.count() - 1, buttons)
        layout.insertWidget(layout.count() - 1, self.compare_button)
        self.copy_button.clicked.connect(self.table.copy_selection)
        self.export_csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_json_button.clicked.connect(lambda: self._export_dialog("json"))

    def build_form(self) -> None:
        viewer = self.viewer
        self.reference_picker = LayerPicker(
            viewer,
            napari.layers.Image,
            label="reference",
            tooltip="the real data (ground truth) the generated layer is compared with",
        )
        self.generated_picker = LayerPicker(
            viewer,
            napari.layers.Image,
            label="generated",
            tooltip="the layer to score (e.g. an interpolation or inpainting result)",
        )
        self.mask_picker = MaskPicker(
            viewer,
            self.reference_picker,
            label="mask (optional)",
            tooltip="a Labels layer: paired metrics are then reported inside and outside it "
            "(default: the reference's '<image> mask', if any)",
        )
        self.region = ComboBox(
            choices=lambda _widget=None: self.region_choices(),
            label="region",
            tooltip="what is scored: 'rebuilt slices only' (default for an interpolation "
            "result: kept slices are copies and would flatter the score), inside and/or "
            "outside the mask, or the whole image",
        )
        self.metric_boxes = {
            name: CheckBox(value=name in DEFAULT_METRICS, text=name, tooltip=METRIC_HELP[name])
            for name in EVALUATE_METRICS
        }
        half = (len(EVALUATE_METRICS) + 1) // 2
        boxes = list(self.metric_boxes.values())
        metric_rows = Container(
            widgets=[
                Container(widgets=boxes[:half], layout="horizontal", labels=False),
                Container(widgets=boxes[half:], layout="horizontal", labels=False),
            ],
            labels=False,
            label="metrics",
        )
        self.range_mode = ComboBox(
            choices=list(RANGE_CHOICES),
            value=RANGE_PERCENTILE,
            label="range",
            tooltip="the intensity span SSIM, PSNR and GMSD are computed on: the reference's "
            "percentile window (default), its contrast limits, the dtype span (flatters "
            "16-bit scans that use part of it) or a window/span typed below",
        )
        self.window_low = FloatSpinBox(
            value=0.0, min=-1e12, max=1e12, step=1.0, label="low", tooltip="window start"
        )
        self.window_high = FloatSpinBox(
            value=1.0, min=-1e12, max=1e12, step=1.0, label="high", tooltip="window end"
        )
        self.range_value = FloatSpinBox(
            value=1.0,
            min=1e-12,
            max=1e12,
            step=1.0,
            label="data range",
            tooltip="the data range (max - min) SSIM and PSNR assume",
        )
        # the workflow's own declaration (metrics.settings): same choices, default and help
        # as `napari-scigen metrics --device/--lpips-net`
        self.device = widget_for(field_spec(MetricsParams, "device"), "auto")
        self.lpips_net = widget_for(field_spec(MetricsParams, "lpips_net"), "alex")
        self.prompt = LineEdit(value="", label="CLIP prompt", tooltip="text scored by clipscore")
        self.add_maps = CheckBox(
            value=True,
            text="add SSIM/LPIPS maps as layers",
            tooltip="add the per-pixel SSIM (and LPIPS) maps over the generated layer",
        )
        self.form.extend(
            [
                self.reference_picker,
                self.generated_picker,
                self.mask_picker,
                self.region,
                metric_rows,
                self.range_mode,
                self.window_low,
                self.window_high,
                self.range_value,
                self.device,
                self.lpips_net,
                self.prompt,
                self.add_maps,
            ]
        )
        choices = [c for c in self.generated_picker.choices if c != self.reference_picker.value]
        reference = self.reference_picker.layer
        same_shape = [
            c
            for c in choices
            if reference is not None and viewer.layers[c].data.shape == reference.data.shape
        ]
        if choices:  # two different layers, preferably of one shape (not StyleGAN samples)
            self.generated_picker.value = (same_shape or choices)[-1]
        self._region_by_hand = False
        self.range_mode.changed.connect(self._update_visibility)
        self.mask_picker.changed.connect(self._update_regions)
        self.generated_picker.changed.connect(self._update_regions)
        self.region.changed.connect(self._on_region_chosen)
        for box in self.metric_boxes.values():
            box.changed.connect(self._update_visibility)
        self._update_regions()

    def _update_visibility(self, _value=None) -> None:
        mode = self.range_mode.value
        self.window_low.visible = self.window_high.visible = mode == RANGE_WINDOW
        self.range_value.visible = mode == RANGE_VALUE
        self.region.visible = len(self.region.choices) > 1
        self.lpips_net.visible = self.metric_boxes["lpips"].value
        self.prompt.visible = self.metric_boxes["clipscore"].value

    def region_choices(self) -> list[str]:
        """The regions that apply to the chosen layers, the default first."""
        choices = []
        if rebuilt_slices(self.generated_picker.layer):
            choices.append(REGION_REBUILT)
        if self.mask_picker.value is not None:
            choices.extend(MASK_REGIONS)
        return [*choices, REGION_WHOLE]

    def _update_regions(self, _value=None) -> None:
        choices = self.region_choices()
        current = self.region.value
        keep = self._region_by_hand and current in choices
        self._setting_region = True
        try:
            self.region.reset_choices()
            self.region.value = current if keep else choices[0]
        finally:
            self._setting_region = False
        self._region_by_hand = keep
        self._update_visibility()

    def _on_region_chosen(self, _value=None) -> None:
        if not getattr(self, "_setting_region", False):
            self._region_by_hand = True

    def open_compare(self):
        """Open (or show) the Compare engines dock on the reference volume and its mask."""
        from ._compare_widget import CompareWidget

        try:
            widget = open_dock(self.viewer, CompareWidget, COMPARE_DOCK)
        except Exception as error:  # noqa: BLE001 - e.g. no window (headless viewer)
            self.show_error(error)
            return None
        if self.reference_picker.value is not None:
            widget.volume_picker.value = self.reference_picker.value
        mask, volume = self.mask_picker.layer, widget.volume_picker.layer
        if mask is not None and volume is not None and mask.data.shape == volume.data.shape:
            widget.mask_picker.value = mask.name
        self.set_status(f"Compare engines opened on '{widget.volume_picker.value}'.")
        return widget

    # -- parameters -----------------------------------------------------------------
    def selected_metrics(self) -> tuple[str, ...]:
        """Names of the ticked metrics, in evaluation order."""
        return tuple(name for name, box in self.metric_boxes.items() if box.value)

    def _data_range(self, reference_layer, reference: np.ndarray):
        mode = self.range_mode.value
        if mode == RANGE_CONTRAST:
            low, high = (float(v) for v in reference_layer.contrast_limits)
        elif mode == RANGE_PERCENTILE:
            return None  # metrics.evaluate's default: the one of every front-end
        elif mode == RANGE_WINDOW:
            low, high = float(self.window_low.value), float(self.window_high.value)
        elif mode == RANGE_VALUE:
            return float(self.range_value.value)
        else:
            return SPAN
        if not high > low:
            raise ValueError(f"the intensity window needs low < high, got {low}, {high}")
        return (low, high)

    def snapshot(self) -> dict[str, Any]:
        reference_layer = self.reference_picker.layer
        generated_layer = self.generated_picker.layer
        if reference_layer is None or generated_layer is None:
            raise ValueError("choose a reference and a generated image layer")
        metrics = self.selected_metrics()
        if not metrics:
            raise ValueError("tick at least one metric")
        reference = layer_data(reference_layer)
        generated = layer_data(generated_layer)
        mask_layer = self.mask_picker.layer
        use_mask, region, rebuilt_only = REGION_CHOICES[self.region.value]
        mask = None
        if mask_layer is not None and use_mask:
            mask = check_mask(
                layer_data(mask_layer), reference.shape, name=f"mask '{mask_layer.name}'"
            ).copy()
        else:
            region = None
        slices = rebuilt_slices(generated_layer) if rebuilt_only else None
        if slices is not None and reference.shape != generated.shape:
            raise ValueError(
                f"'{generated_layer.name}' has shape {generated.shape} and the reference "
                f"'{reference_layer.name}' {reference.shape}: its rebuilt slices have no "
                "counterpart in the reference (an upsampled volume needs a reference at its "
                "z spacing)"
            )
        return {
            "slices": slices,
            "source_layer": generated_layer,
            "reference_layer": reference_layer,
            "reference": reference,
            "generated": generated,
            "mask": mask,
            "region": region,
            "metrics": metrics,
            "data_range": self._data_range(reference_layer, reference),
            "device": self.device.value,
            "lpips_net": self.lpips_net.value,
            "voxel_size": float(reference_layer.scale[-1]),
            "prompt": self.prompt.value.strip() or None,
            "add_maps": bool(self.add_maps.value),
        }

    def run(self):
        """Clear the previous table, then evaluate (errors leave an empty table)."""
        if self.job is None or self.job.finished:
            self.provenance = {}
            self.show_rows([])
        return super().run()

    def show_rows(self, rows: list[dict]) -> None:
        """Fill the table and enable Copy/Export when there is something to copy."""
        self.table.set_rows(rows)
        self._show_notes()
        for button in (self.copy_button, self.export_csv_button, self.export_json_button):
            button.setEnabled(bool(rows))

    def _show_notes(self) -> None:
        """The scale scored on, then each selected row's (every row's) details and note."""
        scoring = (self.provenance or {}).get("extra", {}).get("scoring_window")
        lines = [f"scale of SSIM/PSNR/GMSD: {scoring['description']}"] if scoring else []
        for row in self.table.selected_rows():
            details = summarize_details(row.get("details") or {})
            note = str(row.get("note") or "")
            text = "; ".join(part for part in (details, note) if part)
            if text:
                lines.append(f"{row['metric']} ({row['region']}): {text}")
        self.notes.setText("\n".join(lines))

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        options = {"slices": spec["slices"]} if spec["slices"] is not None else {}
        return api.evaluate_job(
            spec["reference"],
            spec["generated"],
            metrics=spec["metrics"],
            mask=spec["mask"],
            data_range=spec["data_range"],
            device=spec["device"],
            lpips_net=spec["lpips_net"],
            voxel_size=spec["voxel_size"],
            prompt=spec["prompt"],
            cancel=cancel,
            **options,
        )

    # -- results --------------------------------------------------------------------
    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        rows = [dict(row) for row in result.provenance.get("table", [])]
        if spec["region"] is not None:
            other = "outside" if spec["region"] == "inside" else "inside"
            rows = [row for row in rows if row["region"] != other]
        self.provenance = dict(result.provenance)
        self.provenance["source"] = dict(self.provenance.get("source", {}))
        self.provenance["source"]["reference"] = {
            **self.provenance["source"].get("reference", {}),
            "layer": spec["reference_layer"].name,
        }
        self.provenance["source"]["generated"] = {
            **self.provenance["source"].get("generated", {}),
            "layer": spec["source_layer"].name,
        }
        if spec["slices"] is not None:
            for row in rows:
                if row["region"] == "all":
                    row["region"] = "rebuilt slices"
        self.show_rows(rows)
        self.scroll_area.ensureWidgetVisible(self.table)
        self.map_layers = self.add_map_layers(spec, result) if spec["add_maps"] else []

    def add_map_layers(self, spec: dict[str, Any], result: EngineResult) -> list:
        """Add the SSIM/LPIPS maps as float32 image layers over the generated layer.

        A map of some slices only (*rebuilt slices only*) is placed at those slices of a
        volume of the generated layer's depth (NaN elsewhere), so it lies on them.
        """
        source = spec["source_layer"]
        metadata = layer_metadata(result.provenance, dict(source.metadata))
        added = []
        for key, data in result.images.items():
            data = _at_slices(data, spec["slices"], spec["generated"].shape)
            name = next_layer_name([layer.name for layer in self.viewer.layers], source.name, key)
            ndim = np.ndim(data)
            kwargs: dict[str, Any] = {
                "name": name,
                **source_geometry(source, ndim),
                "metadata": metadata,
                "colormap": "viridis" if key.startswith("ssim") else "magma",
            }
            finite = np.asarray(data)[np.isfinite(data)]
            if key in MAP_CONTRAST:
                kwargs["contrast_limits"] = MAP_CONTRAST[key]
            elif finite.size and float(finite.max()) > float(finite.min()):
                kwargs["contrast_limits"] = (float(finite.min()), float(finite.max()))
            added.append(self.viewer.add_image(data, **kwargs))
        return added

    @property
    def rows(self) -> list[dict]:
        """The rows shown in the table."""
        return list(self.table.rows)

    def export(self, path: str | Path) -> Path:
        """Export the table to ``path``: JSON for ``*.json``, CSV otherwise."""
        if Path(path).suffix.lower() == ".json":
            return write_rows_json(self.rows, path, provenance=self.provenance)
        return write_rows_csv(self.rows, path)

    def _export_dialog(self, kind: str) -> None:
        pattern = "CSV (*.csv)" if kind == "csv" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export metrics as {kind.upper()}", "", pattern
        )
        if not path:
            return
        if not path.lower().endswith(f".{kind}"):
            path += f".{kind}"
        try:
            written = self.export(path)
        except OSError as error:
            self.show_error(error)
            return
        self.set_status(f"Wrote {written}")
